"""Default rule `failed-login` in Python: tell the admins and/or the user when a login fails
(OMERO's FailedLoginMailSender). Its mail is byte-identical to the Rust rule's."""

from herald import Admins, LoginFailed, Message, Rule, UserName, directory, omero


class FailedLogin(Rule):
    # OMERO's stock example is {contact_system: true, on_specific_users: [root]}; with every
    # setting at its default the rule sends nothing.
    defaults = {
        "contact_system": False,  # mail all admins (OMERO's contactSystem)
        "contact_user": False,  # mail the user whose login failed (contactUser)
        "on_all_users": False,  # fire for every username, unknown ones too (onAllUsers)
        "on_specific_users": [],  # fire for these usernames (onSpecificUsers)
        "mode": "parity",  # or "enriched": who, from where, when, a link, an HTML part
        "subject_prefix": omero.SUBJECT_PREFIX,
        "web_url": None,  # enriched only: a link template; {name} is the tried username
    }

    def on_login_failed(self, event, failed: LoginFailed):
        settings = self.settings()
        fires = settings.on_all_users or failed.user in settings.on_specific_users
        if not omero.login_definitely_failed(event.data_json) or not fires:
            return []
        to = []
        if settings.contact_system:
            to.append(Admins())
        if settings.contact_user:
            to.append(UserName(failed.user))
        if not to:
            return []
        subject = f"{settings.subject_prefix}Login failed for '{omero.header_value(failed.user)}'"
        if settings.mode == "enriched":
            mail = enriched(event, failed, settings).message(subject)
        else:
            mail = Message(subject=subject, text=omero.DEFAULT_BODY)
        mail.to = to
        return [mail]


def enriched(event, failed: LoginFailed, settings) -> omero.Summary:
    """Who (with the full name when the directory knows the user), from where, when, a link."""
    user = directory.user_by_name(failed.user)
    who = omero.display_name(user) if user else f"{failed.user} (not a known user)"
    url = None
    if settings.web_url is not None:
        url = omero.link(settings.web_url, [("name", failed.user)])
    return (
        omero.Summary(f"A login as '{failed.user}' failed.")
        .fact("User", who)
        .fact("Remote address", failed.remote_addr or "unknown")
        .fact("User agent", failed.user_agent or "unknown")
        .fact("Time", event.time)
        .link("Open in OMERO.web", url)
    )
