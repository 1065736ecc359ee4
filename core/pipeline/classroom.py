"""Serving the lab to a class from one GPU server: the lecturer's settings, who is who, and who is the lecturer.

1. `load_settings()`: the `[classroom]` table of the lab's config file (`lab.toml` beside Home.py, or the file
   named by DDL_CONFIG): the queue's limits, whether login is required, and who may open the admin view.
   A missing file means the defaults below, which suit a class of 20-40 on one GPU; a wrong value is an error
   that names the key and what it should be.
2. `person_from(...)`: the key a run is queued under. One person is one browser (every tab shares its cookies),
   or one login when login is on; the browser's XSRF token is hashed, never shown or stored as it is.
3. `is_admin(...)`: the lecturer, by the login's e-mail (allow-list) or by the admin token from the config.

```toml
[classroom]
images_per_run = 512         # new images one Generate click may make (all the classes of a class-list page)
runs_per_person = 2          # runs one person may have in the queue at once (all their tabs together)
queue_length = 60            # runs in the queue at once, everybody together
gpu_memory_headroom_gb = 1.0 # take no new run while the GPU has less free than this (0: do not check)
login = false                # require st.login (OIDC, configured in .streamlit/secrets.toml)
admins = ["lecturer@example.org"]  # logins that see the admin view
admin_token = ""             # or: a token the lecturer types on the admin page (keep this file private)
```
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from core.pipeline.config import REPO_ROOT

CONFIG_ENV = "DDL_CONFIG"
DEFAULT_CONFIG = REPO_ROOT / "lab.toml"
XSRF_COOKIE = "_streamlit_xsrf"


class ClassroomConfigError(ValueError):
    """The config file cannot be used; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Limits:
    """What one server takes at once. Defaults for a class of 20-40 on one GPU. A run is one Generate click (on a
    class-list page: every class's missing images together); the queue serves it batch by batch, so a long run
    slows others only by its share. SD-Turbo makes about 5 images/s of 512 px on an H200 (bench/README.md): a
    512-image run takes under 2 minutes alone, a queue of 60 runs of 16 images about 3 minutes."""

    images_per_run: int = 512
    runs_per_person: int = 2
    queue_length: int = 60
    gpu_headroom_gb: float = 1.0


@dataclass(frozen=True)
class ClassroomSettings:
    limits: Limits = field(default_factory=Limits)
    login: bool = False
    admins: tuple[str, ...] = ()
    admin_token: str = ""
    source: str = "defaults (no lab.toml)"


_KEYS = {  # key in the file -> (Limits field or settings field, type, lower bound)
    "images_per_run": ("images_per_run", int, 1),
    "runs_per_person": ("runs_per_person", int, 1),
    "queue_length": ("queue_length", int, 1),
    "gpu_memory_headroom_gb": ("gpu_headroom_gb", float, 0),
}


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()


def load_settings(path: Path | None = None) -> ClassroomSettings:
    """The `[classroom]` table of the config file (defaults where it or the file is absent)."""
    path = path or config_path()
    if not path.is_file():
        if os.environ.get(CONFIG_ENV):
            raise ClassroomConfigError(f"{CONFIG_ENV} names {path}, which is not a file. Point it at the lab's "
                                       f"TOML config, or unset it to use {DEFAULT_CONFIG.name} or the defaults.")
        return ClassroomSettings()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClassroomConfigError(f"{path} cannot be read as TOML ({exc}). Fix the file, or move it away to use "
                                   f"the defaults.") from exc
    table = data.get("classroom", {})
    if not isinstance(table, dict):
        raise ClassroomConfigError(f"{path}: 'classroom' must be a table ([classroom]), not a value.")
    known = set(_KEYS) | {"login", "admins", "admin_token"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ClassroomConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in "
                                   f"[classroom]; the keys are {', '.join(sorted(known))}.")
    limits = {}
    for key, (name, kind, low) in _KEYS.items():
        if key not in table:
            continue
        value = table[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or
                                                                                 isinstance(value, int))
        if not ok or value < low:
            raise ClassroomConfigError(f"{path}: [classroom] {key} = {value!r}; it must be "
                                       f"{'an integer' if kind is int else 'a number'} >= {low}.")
        limits[name] = kind(value)
    login = table.get("login", False)
    if not isinstance(login, bool):
        raise ClassroomConfigError(f"{path}: [classroom] login = {login!r}; it must be true or false.")
    admins = table.get("admins", [])
    if not isinstance(admins, list) or not all(isinstance(a, str) for a in admins):
        raise ClassroomConfigError(f"{path}: [classroom] admins must be a list of e-mail addresses, e.g. "
                                   f'admins = ["lecturer@example.org"].')
    token = table.get("admin_token", "")
    if not isinstance(token, str):
        raise ClassroomConfigError(f"{path}: [classroom] admin_token must be a string.")
    if token and len(token) < 12:
        raise ClassroomConfigError(f"{path}: [classroom] admin_token is {len(token)} characters; use at least 12 "
                                   f"(e.g. python -c \"import secrets; print(secrets.token_urlsafe())\").")
    return ClassroomSettings(Limits(**limits), login, tuple(a.strip().lower() for a in admins), token, str(path))


def describe_limits(limits: Limits) -> list[tuple[str, str, str]]:
    """(key in the file, value, meaning) for the admin view and the README."""
    meaning = {"images_per_run": "new images one run may ask for",
               "runs_per_person": "runs one person (all their tabs) may have in the queue",
               "queue_length": "runs in the queue, everybody together",
               "gpu_headroom_gb": "GB of GPU memory that must stay free for a new run (0: not checked)"}
    file_key = {name: key for key, (name, _, _) in _KEYS.items()}
    return [(file_key[f.name], f"{getattr(limits, f.name):g}", meaning[f.name]) for f in fields(limits)]


def _xsrf_token(cookie: str) -> bytes | None:
    """The token inside Streamlit's XSRF cookie. Its value is re-masked on every response ("2|mask|masked|time"),
    so the raw value differs between tabs and reloads while the token stays the browser's own."""
    value = cookie.strip("\"'")
    try:
        if value.startswith("2|"):
            _, mask_hex, masked_hex, _ = value.split("|")
            mask, masked = bytes.fromhex(mask_hex), bytes.fromhex(masked_hex)
            return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)) if mask else None
        return bytes.fromhex(value) or None
    except ValueError:
        return None


def person_from(*, email: str | None = None, cookies: dict | None = None, session_id: str = "") -> str:
    """The queue's key for whoever runs this session: the login's e-mail, else the browser (its XSRF token,
    hashed), else the session alone (no cookies, e.g. XSRF protection off or a test harness)."""
    if email:
        return "login:" + email.strip().lower()
    token = _xsrf_token((cookies or {}).get(XSRF_COOKIE, "") or "")
    if token:
        return "browser:" + hashlib.sha256(b"ddl-person:" + token).hexdigest()[:12]
    return "session:" + hashlib.sha256(session_id.encode()).hexdigest()[:12]


def is_admin(settings: ClassroomSettings, *, email: str | None = None, token: str | None = None) -> bool:
    """The lecturer: a login on the allow-list, or the admin token (compared in constant time)."""
    if email and email.strip().lower() in settings.admins:
        return True
    return bool(settings.admin_token and token and hmac.compare_digest(token.encode(), settings.admin_token.encode()))


def gpu_free_bytes() -> int | None:
    """Bytes a new run could still use on the GPU: the driver's free memory plus what torch holds cached but
    unused. None without CUDA (nothing to watch) or before torch is imported by a model load."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just to answer this (a page that only reopens runs)
    if torch is None or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info()
    return int(free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())


def about(seconds: float | None) -> str:
    """'about 20 seconds', 'about 2 minutes': a wait as a person reads it."""
    if seconds is None:
        return "an unknown time"
    if seconds < 10:
        return "a few seconds"
    if round(seconds / 5) * 5 < 60:
        return f"about {round(seconds / 5) * 5:.0f} seconds"
    minutes = round(seconds / 60)
    return "about 1 minute" if minutes <= 1 else f"about {minutes} minutes"
