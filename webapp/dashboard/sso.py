"""Single sign-on with OpenID Connect through Authlib: "Sign in with ..." sends the browser to the
provider (authorization code flow with PKCE S256, `state` and `nonce`, endpoints from its
discovery document); the callback exchanges the code and has Authlib verify the ID token (its
signature by the provider's JWKS, `iss`, `aud`, `exp`, `nonce`). services/sso.py then decides what
the verified claims allow. Every refusal is a page that says why, and a `login.failed` audit row."""
from __future__ import annotations

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import login_user
from joserfc.errors import JoseError
from requests import RequestException

from ..gate import OPEN, needs, source
from ..services import sso
from .auth import safe_next
from .blueprint import bp

SCOPES = "openid email profile groups"
NEXT = "sso_next"


def _client():
    """The Authlib client of the configured provider (one per configuration, made on first use)."""
    cfg = current_app.config
    key = (cfg["OIDC_ISSUER"], cfg["OIDC_CLIENT_ID"], cfg["OIDC_CLIENT_SECRET"])
    clients = current_app.extensions.setdefault("sso_clients", {})
    if key not in clients:
        oauth = OAuth(current_app._get_current_object())
        clients[key] = oauth.register(
            "sso", client_id=cfg["OIDC_CLIENT_ID"], client_secret=cfg["OIDC_CLIENT_SECRET"],
            server_metadata_url=cfg["OIDC_ISSUER"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": SCOPES, "code_challenge_method": "S256", "timeout": 10})
    return clients[key]


def _refused(message: str, status: int = 403):
    return render_template("dashboard/login.html", error=message, sso_error=True), status


@bp.get("/login/sso")
@needs(OPEN)
def sso_start():
    if not sso.configured():
        return _refused("Single sign-on is not set up on this installation.", 404)
    session[NEXT] = safe_next(request.args.get("next"))
    try:
        return _client().authorize_redirect(current_app.config["BASE_URL"] + url_for("dashboard.sso_callback"))
    except (RequestException, OAuthError, ValueError, KeyError) as e:
        return _refused(f"The sign-in provider could not be reached ({type(e).__name__}); try again later.", 502)


@bp.get("/login/sso/callback")
@needs(OPEN)
def sso_callback():
    if not sso.configured():
        return _refused("Single sign-on is not set up on this installation.", 404)
    try:
        token = _client().authorize_access_token()
    except OAuthError as e:
        return _refused(sso.refuse("", f"the provider's answer was refused: {e.error}"
                                   f"{': ' + e.description if e.description else ''}", source()).message)
    except JoseError as e:
        return _refused(sso.refuse("", f"the provider's ID token was refused: {_why(e)}", source()).message)
    except RequestException as e:
        return _refused(f"The sign-in provider could not be reached ({type(e).__name__}); try again later.", 502)
    claims = token.get("userinfo")
    if not claims:
        return _refused(sso.refuse("", "the provider sent no ID token", source()).message)
    claims = dict(claims)
    if "email" not in claims:
        info = _client().userinfo(token=token)
        if info.get("sub") == claims.get("sub"):
            claims.update({k: v for k, v in info.items() if k != "sub"})
    try:
        user = sso.sign_in(claims, source())
    except sso.Refused as e:
        return _refused(e.message)
    login_user(user)
    return redirect(session.pop(NEXT, None) or url_for("dashboard.index"))


CLAIMS = {
    "aud": "it was issued to another client (its audience is not this installation)",
    "azp": "it was issued to another client (its audience is not this installation)",
    "nonce": "it does not answer this sign-in (its nonce is not the one we sent): start again",
    "iss": "it comes from another issuer than the configured OIDC_ISSUER",
    "exp": "it has expired", "iat": "its issue time is in the future",
}


def _why(e: JoseError) -> str:
    """The check an ID token failed, in words."""
    if type(e).__name__ == "ExpiredTokenError":
        return CLAIMS["exp"]
    if type(e).__name__ == "BadSignatureError":
        return "its signature does not verify with the provider's keys"
    claim = getattr(e, "claim", None)
    return CLAIMS.get(claim, f"its {claim} claim is missing or wrong" if claim else f"{type(e).__name__}: {e}")
