"""{{name}}: a Herald rule in Python. Welcome each new OMERO user, and tell the owners of
their groups (a worked example: change it to what your facility needs)."""

from herald import Message, Rule, UserCreated, GroupOwners, UserId, omero


class Welcome(Rule):
    # The rule's settings: `config:` in herald.yaml overrides them; other keys are refused.
    defaults = {"subject_prefix": "[OMERO] ", "tell_owners": True}

    def on_user_created(self, event, created: UserCreated):
        # Other kinds of event (on_login_failed, on_server_down, ...) send nothing here.
        settings = self.settings()
        name = omero.header_value(created.user.name)
        mails = [
            Message(
                subject=f"{settings.subject_prefix}Welcome to OMERO, {name}",
                text=f"Hello {name},\n\nyour OMERO account is ready.\n",
                to=[UserId(created.user.id)],
            )
        ]
        if settings.tell_owners:
            for group in created.groups:
                group_name = omero.header_value(group.name)
                mails.append(
                    Message(
                        subject=f"{settings.subject_prefix}{name} joined {group_name}",
                        text=f"{name} is a new member of your group {group_name}.\n",
                        to=[GroupOwners(group.name)],
                    )
                )
        return mails
