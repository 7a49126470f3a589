"""Dispatch overhead: POST trigger -> terminal status over the API, against a bare `docker run --rm`.

One run: (1) the median of N interleaved single runs of `true`, ours vs the engine's own; (2) a
burst of 40 runs on 4 slots against `xargs -P4 docker run --rm`. Each is also compared with the
same CLI given the options every run gets (the runs network, capabilities, limits, log options):
what the engine alone charges for that isolation. Goal: ratios against the bare CLI <= 1.00.
Usage: .venv/bin/python bench/dispatch.py [N]
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from stack import IMAGE, Stack

BURST = 40
# What jobs/engine.py host_config gives every run, as CLI options (defaults of the configuration).
RUN_OPTIONS = ("--network workflows-runs --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER "
               "--cap-add FSETID --cap-add KILL --cap-add SETGID --cap-add SETUID --cap-add NET_BIND_SERVICE "
               "--security-opt no-new-privileges --pids-limit 512 --memory 1024m --cpus 1 "
               "--log-opt max-size=100m --log-opt max-file=2").split()


def docker_run(options: tuple = ()) -> float:
    t = time.monotonic()
    subprocess.run(["docker", "run", "--rm", *options, IMAGE, "true"], check=True, capture_output=True)
    return time.monotonic() - t


def ours(stack: Stack, wf_id: str) -> float:
    t = time.monotonic()
    run = stack.trigger(wf_id)
    done = stack.wait_terminal(run["id"])
    assert done["status"] == "succeeded", done
    return time.monotonic() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    # The 30/minute/team trigger limit is configuration; the benchmark lifts it to measure the engine path.
    with Stack(slots=4, extra_env={"TRIGGER_RATE_LIMIT": "1000 per minute"}) as stack:
        wf_id = stack.create_workflow(command=["true"])
        ours(stack, wf_id), docker_run(), docker_run(RUN_OPTIONS)  # warm every path
        mine, bare, alike = [], [], []
        for _ in range(n):
            mine.append(ours(stack, wf_id))
            bare.append(docker_run())
            alike.append(docker_run(RUN_OPTIONS))
        m, b, a = statistics.median(mine), statistics.median(bare), statistics.median(alike)
        print(f"single run, median of {n}: workflows {m * 1000:.0f} ms, docker run --rm {b * 1000:.0f} ms "
              f"(ratio {m / b:.2f}), docker run --rm with the run options {a * 1000:.0f} ms (ratio {m / a:.2f})")

        burst_wf = stack.create_workflow(command=["true"], name="burst")
        time.sleep(1)
        t = time.monotonic()
        runs = [stack.trigger(burst_wf) for _ in range(BURST)]
        for r in runs:
            stack.wait_terminal(r["id"], every=0.05)
        ours_burst = time.monotonic() - t
        cli = {}
        for name, options in (("bare", ""), ("alike", " ".join(RUN_OPTIONS))):
            t = time.monotonic()
            subprocess.run(f"seq {BURST} | xargs -P4 -I{{}} docker run --rm {options} {IMAGE} true", shell=True,
                           check=True, capture_output=True)
            cli[name] = time.monotonic() - t
        print(f"burst of {BURST} on 4 slots: workflows {ours_burst:.2f} s, xargs -P4 docker run --rm "
              f"{cli['bare']:.2f} s (ratio {ours_burst / cli['bare']:.2f}), the same with the run options "
              f"{cli['alike']:.2f} s (ratio {ours_burst / cli['alike']:.2f})")


if __name__ == "__main__":
    main()
