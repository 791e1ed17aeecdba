"""Default rule `new-user` in Python: tell every admin when an OMERO user is created
(OMERO's newUserMailSender). Its mail is byte-identical to the Rust rule's."""

from herald import Admins, Message, Rule, UserCreated, omero


class NewUser(Rule):
    # `web_url` placeholders: `{id}` and `{name}` of the new user (enriched mode).
    defaults = {"mode": "parity", "subject_prefix": omero.SUBJECT_PREFIX, "web_url": None}

    def on_user_created(self, event, created: UserCreated):
        settings = self.settings()
        subject = f"{settings.subject_prefix}INSERT Experimenter notification"
        if settings.mode == "enriched":
            mail = enriched(event, created, settings).message(subject)
        else:
            body = omero.modified_objects(omero.EXPERIMENTER, [created.user.id], "INSERT")
            mail = Message(subject=subject, text=body)
        mail.to = [Admins()]
        return [mail]


def enriched(event, created: UserCreated, settings) -> omero.Summary:
    """Who, their email and groups, when, and the optional link."""
    user = created.user
    url = None
    if settings.web_url is not None:
        url = omero.link(settings.web_url, [("id", str(user.id)), ("name", user.name)])
    groups = ", ".join(g.name for g in created.groups)
    return (
        omero.Summary(f"A new OMERO user was created: {omero.display_name(user)}.")
        .fact("User", omero.display_name(user))
        .fact("User id", str(user.id))
        .fact("Email", user.email or "none")
        .fact("Groups", groups or "none")
        .fact("Time", event.time)
        .link("Open in OMERO.web", url)
    )
