"""Email over the configured SMTP server: a plain-text and an HTML part."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

from email_validator import EmailNotValidError, validate_email
from flask import render_template

from .base import Message, Transport, TransportError


MAX_ADDRESSES = 20


class Email(Transport):
    @classmethod
    def configure(cls, target: str) -> tuple[dict, str | None]:
        addresses = [a.strip() for a in target.replace(";", ",").replace("\n", ",").split(",") if a.strip()]
        problem = None if 0 < len(addresses) <= MAX_ADDRESSES else "one to twenty email addresses"
        for a in addresses:
            try:
                validate_email(a, check_deliverability=False, test_environment=True, globally_deliverable=False)
            except EmailNotValidError:
                problem = f"{a[:60]} is not an email address"
        return {"addresses": addresses}, problem

    @classmethod
    def describe(cls, config: dict) -> str:
        return ", ".join(config.get("addresses", []))

    def notify(self, message: Message) -> None:
        cfg = self.app_config
        mail = EmailMessage()
        mail["Subject"] = render_template("emails/subject.txt", m=message).strip()
        mail["From"] = cfg["SMTP_FROM"]
        mail["To"] = ", ".join(self.config["addresses"])
        mail.set_content(render_template("emails/body.txt", m=message))
        mail.add_alternative(render_template("emails/body.html", m=message), subtype="html")
        send(cfg, mail)


def send(cfg, mail: EmailMessage) -> None:
    """`mail` through the configured SMTP server (its From set here); TransportError if it failed."""
    if "From" not in mail:
        mail["From"] = cfg["SMTP_FROM"]
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=15) as smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg["SMTP_USER"]:
                smtp.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"])
            smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as e:
        raise TransportError(f"the SMTP server refused the recipients: {list(e.recipients)}", permanent=True) from None
    except smtplib.SMTPResponseException as e:
        raise TransportError(f"the SMTP server answered {e.smtp_code}", permanent=e.smtp_code >= 500,
                             status=e.smtp_code) from None
    except (OSError, smtplib.SMTPException) as e:
        raise TransportError(f"could not send through the SMTP server: {type(e).__name__}") from None
