"""Dispatch overhead: POST trigger -> terminal status over the API, against a bare `docker run --rm`.

One run: (1) the median of N interleaved single runs of `true`, ours vs the engine's own; (2) a
burst of 40 runs on 4 slots against `xargs -P4 docker run --rm`. Each is also compared with the
same CLI given the options every run gets (the runs network, capabilities, limits, log options):
what the engine alone charges for that isolation. Goal: ratios against the bare CLI <= 1.00. Then
the burst on two worker hosts of 2 slots each (two `flask worker` processes with their own
WORKER_HOST, on this one engine) against one host of 4 slots, in interleaved rounds: goal within
10%, and the single run with two hosts as before.
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


def timed_burst(stack: Stack, wf_id: str) -> float:
    t = time.monotonic()
    runs = [stack.trigger(wf_id) for _ in range(BURST)]
    for r in runs:
        stack.wait_terminal(r["id"], every=0.05)
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
        ours_burst = timed_burst(stack, burst_wf)
        cli = {}
        for name, options in (("bare", ""), ("alike", " ".join(RUN_OPTIONS))):
            t = time.monotonic()
            subprocess.run(f"seq {BURST} | xargs -P4 -I{{}} docker run --rm {options} {IMAGE} true", shell=True,
                           check=True, capture_output=True)
            cli[name] = time.monotonic() - t
        print(f"burst of {BURST} on 4 slots: workflows {ours_burst:.2f} s, xargs -P4 docker run --rm "
              f"{cli['bare']:.2f} s (ratio {ours_burst / cli['bare']:.2f}), the same with the run options "
              f"{cli['alike']:.2f} s (ratio {ours_burst / cli['alike']:.2f})")

        # Two worker hosts of 2 slots each against one of 4 (one engine: the split is what is measured).
        one_host, two_hosts = [ours_burst], []
        workers = [stack.procs[1]]  # the stack's own worker: one host, 4 slots
        for round_ in range(3):
            for p in workers:
                stack.stop_process(p)
            workers = [stack.worker(2, "bench-host-a"), stack.worker(2, "bench-host-b")]
            time.sleep(1)
            two_hosts.append(timed_burst(stack, burst_wf))
            if round_ == 2:
                break
            for p in workers:
                stack.stop_process(p)
            workers = [stack.worker(4)]
            time.sleep(1)
            one_host.append(timed_burst(stack, burst_wf))
        one, two = statistics.median(one_host), statistics.median(two_hosts)
        print(f"burst of {BURST}, medians of {len(one_host)} interleaved rounds: one host of 4 slots {one:.2f} s "
              f"({', '.join(f'{x:.2f}' for x in one_host)}), two hosts of 2 slots {two:.2f} s "
              f"({', '.join(f'{x:.2f}' for x in two_hosts)}); ratio {two / one:.2f} (goal <= 1.10)")
        singles = [ours(stack, wf_id) for _ in range(n)]
        print(f"single run with two hosts, median of {n}: {statistics.median(singles) * 1000:.0f} ms "
              f"(one host above: {m * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
