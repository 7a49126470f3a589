"""`make run`'s supervisor: supervisord (the `supervisor` package) with a config made from the Procfile.

Each Procfile line becomes a program that is restarted alone when it dies (supervisord logs the
exit and its reason, and backs off when a process keeps dying at start), while the others go on.
Ctrl-C or SIGTERM stops every program, each as a process group, within stopwaitsecs, orphans
included. Run containers are not stopped: the next start re-attaches them.

Usage: .venv/bin/python scripts/supervise.py   (from the project's root; runs in the foreground)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
STOP_WAIT_SEC = 10  # SIGTERM, then SIGKILL of the whole group: all stopped well within 15 s


def programs(procfile: Path) -> dict[str, str]:
    out = {}
    for line in procfile.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        out[name.strip()] = command.strip()
    return out


def config(procs: dict[str, str]) -> str:
    parts = [f"""[supervisord]
nodaemon=true
logfile=/dev/stdout
logfile_maxbytes=0
loglevel=info
pidfile={VAR}/supervisord.pid
directory={ROOT}

[unix_http_server]
file={VAR}/supervisord.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{VAR}/supervisord.sock
"""]
    for name, command in procs.items():
        quoted = command.replace("%", "%%").replace('"', '\\"')
        parts.append(f"""[program:{name}]
command=/bin/sh -c "{quoted}"
directory={ROOT}
autostart=true
autorestart=true
startsecs=1
startretries=1000
stopsignal=TERM
stopwaitsecs={STOP_WAIT_SEC}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
""")
    return "\n".join(parts)


def main() -> None:
    VAR.mkdir(exist_ok=True)
    conf = VAR / "supervisord.conf"
    conf.write_text(config(programs(ROOT / "Procfile")))
    supervisord = ROOT / ".venv" / "bin" / "supervisord"
    os.execv(str(supervisord), [str(supervisord), "-c", str(conf)])


if __name__ == "__main__":
    sys.exit(main())
