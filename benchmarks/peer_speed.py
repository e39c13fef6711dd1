r"""Step time of jaxssl and its PyTorch peer on a CPU recipe, interleaved, at 1 and 2 threads.

Run (about 6 minutes for both thread settings on a 2-vCPU machine, DINO, batch 64):
  python benchmarks/peer_speed.py --threads both --out peer_speed.json
  python benchmarks/peer_speed.py --method msn --threads 1 --rounds 4 --steps-per-round 10

The peer is benchmarks/peer_lightly.py's eager PyTorch model (same ViT, heads and crops as the
recipe, parameter counts asserted equal) with lightly's loss; where lightly is not installed
(``pip install --no-deps lightly==1.6.0``) DINO uses that file's ``BuiltinDINOLoss``, the same
maths, and the report says which.

How it measures (each thread setting on its own):
  1. Two long-lived worker processes (benchmarks/peer_speed_worker.py), one per framework, each
     pinned to CPUs 0..N-1 and limited to N threads from its first line (see the worker's
     docstring for how each framework is limited), so neither's thread pool meets the other's.
     Each builds its model, compiles (jaxssl) and runs ``--warmup`` untimed steps.
  2. The parent then asks them in turn for ``--steps-per-round`` steps, A, B, A, B, ... for
     ``--rounds`` rounds: slow drifts of the machine's load reach both sides alike. While one
     side runs, the other waits on its pipe (idle). ``os.getloadavg()`` is read before and after
     every block.
  3. Every timed step counts: the table gives the median, 10th and 90th percentile of the
     per-step wall time over all rounds, images/s = batch / median, the median process CPU time
     per step (all threads), "cores used" = total CPU / total wall, and the ratio jaxssl / torch
     of the medians (< 1: jaxssl faster).
  4. Breakdown (``--breakdown-reps`` > 0), wall and CPU time: torch's phases are timed inside
     every step (eager, so the clock between ops is exact): augmentation, forward (student,
     teacher, loss), backward, update (clipping, AdamW, EMA teacher). jaxssl's step is one fused
     XLA program, so its augmentation, forward, forward + backward and update (the step's optax
     update and EMA teacher lines) are jitted alone and timed ``reps`` times, interleaved;
     backward = (forward + backward) - forward. jaxssl's parts are separate programs: XLA fuses
     across their boundaries inside the real step, so they need not add up to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from jaxssl.host_malloc import huge_page_env

SIDES = ("jaxssl", "torch")  # A, B: the order of the blocks in every round
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_speed_worker.py")
SUMMARY_HEADER = ("| threads | framework | median ms | p10 ms | p90 ms | images/s | CPU ms "
                  "(median) | cores used | steps |")
BREAKDOWN_HEADER = ("| part | jaxssl ms | torch ms | jaxssl / torch | jaxssl CPU ms | torch CPU ms "
                    "| CPU jaxssl / torch |")


class Worker:
    """A peer_speed_worker.py process and its JSON-lines pipe."""

    def __init__(self, side: str, args: argparse.Namespace, threads: int, log_dir: str):
        self.side, self.log_path = side, os.path.join(log_dir, f"{side}-{threads}.log")
        cmd = [sys.executable, WORKER, "--side", side, "--method", args.method,
               "--batch", str(args.batch), "--threads", str(threads),
               "--warmup", str(args.warmup), "--seed", str(args.seed)]
        cmd += ["--tiny"] if args.tiny else []
        # "huge": XLA's per-step scratch on transparent huge pages, as python -m jaxssl.train
        # runs (jaxssl.host_malloc); "system": glibc's defaults.
        malloc = args.jaxssl_malloc if side == "jaxssl" else args.torch_malloc
        env = dict(os.environ)
        env.pop("GLIBC_TUNABLES", None)
        env = (huge_page_env(env) or env) if malloc == "huge" else env
        self.malloc = "huge" if "hugetlb" in env.get("GLIBC_TUNABLES", "") else "system"
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True, bufsize=1, env=env)

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            with open(self.log_path, encoding="utf-8") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"the {self.side} worker exited with status "
                               f"{self.proc.returncode}; its log ends:\n{tail}")
        return json.loads(line)

    def ready(self) -> dict:
        return self._read()["ready"]

    def request(self, **msg: Any) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run_setting(args: argparse.Namespace, threads: int, log_dir: str) -> dict[str, Any]:
    """Both workers at ``threads``: warm-up, the interleaved rounds, the breakdown."""
    workers = {side: Worker(side, args, threads, log_dir) for side in SIDES}
    try:
        info = {side: dict(w.ready(), malloc=w.malloc) for side, w in workers.items()}
        steps: dict[str, list] = {side: [] for side in SIDES}
        blocks = []
        for r in range(args.rounds):
            for side in SIDES:
                before = os.getloadavg()
                got = workers[side].request(cmd="run", steps=args.steps_per_round)["steps"]
                blocks.append({"round": r, "side": side, "load_before": before,
                               "load_after": os.getloadavg(),
                               "median_ms": 1e3 * statistics.median(s[0] for s in got)})
                steps[side] += got
            print(f"threads {threads}: round {r + 1}/{args.rounds} done", file=sys.stderr,
                  flush=True)
        breakdown, update_vs_step = {}, None
        if args.breakdown_reps:
            got = {side: w.request(cmd="breakdown", reps=args.breakdown_reps)
                   for side, w in workers.items()}
            breakdown = {side: g["breakdown"] for side, g in got.items()}
            update_vs_step = got["jaxssl"]["update_vs_step"]
    finally:
        for w in workers.values():
            w.close()
    return {"threads": threads, "workers": info, "steps": steps, "blocks": blocks,
            "breakdown": breakdown, "update_vs_step": update_vs_step}


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (q in 1..99), linear interpolation between order statistics."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summarise(steps: list, batch: int) -> dict[str, float]:
    """Wall and CPU figures of a list of ``[wall_s, cpu_s, phases]`` steps."""
    wall = [1e3 * s[0] for s in steps]
    cpu = [1e3 * s[1] for s in steps]
    med = statistics.median(wall)
    return {"median_ms": med, "p10_ms": percentile(wall, 10), "p90_ms": percentile(wall, 90),
            "images_per_s": 1e3 * batch / med, "cpu_median_ms": statistics.median(cpu),
            "cores_used": sum(cpu) / sum(wall), "steps": len(steps)}


def breakdown_rows(setting: dict[str, Any], summary: dict[str, dict]) -> list[tuple]:
    """(part, jaxssl (wall, CPU) ms, torch (wall, CPU) ms) for augmentation, forward, backward,
    update and the whole step: medians; jaxssl's backward is the median of the per-repetition
    differences (forward + backward) - forward."""
    def med(pairs: list, i: int) -> float:
        return 1e3 * statistics.median(p[i] for p in pairs)

    jb = setting["breakdown"]["jaxssl"]
    diff = [[b[i] - a[i] for i in (0, 1)] for a, b in zip(jb["forward"], jb["forward+backward"])]
    j = {k: (med(v, 0), med(v, 1)) for k, v in {**jb, "backward": diff}.items()}
    sj = summary["jaxssl"]
    whole = (sj["median_ms"], sj["cpu_median_ms"])
    t_steps = setting["steps"]["torch"]
    t = {p: (med([s[2][p] for s in t_steps], 0), med([s[2][p] for s in t_steps], 1))
         for p in ("augment", "forward", "backward", "update")}
    st = summary["torch"]
    return [("photometric augmentation", j["augment"], t["augment"]),
            ("forward (student + teacher + loss)", j["forward"], t["forward"]),
            ("backward", j["backward"], t["backward"]),
            ("update (clip + AdamW + EMA)", j["update"], t["update"]),
            ("whole step (median of the rounds)", whole, (st["median_ms"], st["cpu_median_ms"]))]


def machine() -> dict[str, Any]:
    """CPU model, CPU count, kernel, date and load average of this machine, now."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg": os.getloadavg()}


def render(result: dict[str, Any]) -> str:
    """The markdown report: settings, whole-step summary, ratios, breakdown, rounds."""
    a, m = result["args"], result["machine"]
    first = result["settings"][0]["workers"]
    tiny = " (tiny model)" if a["tiny"] else ""
    lines = [f"## peer_speed: {a['method']}, batch {a['batch']}{tiny}, {a['rounds']} rounds x "
             f"{a['steps_per_round']} steps per side, interleaved",
             "",
             f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, Linux {m['kernel']}, Python "
             f"{m['python']}; jax {first['jaxssl']['jax']}, torch {first['torch']['torch']}, "
             f"peer loss: {first['torch']['loss']}; large host blocks: jaxssl "
             f"{first['jaxssl'].get('malloc', '?')} pages, torch "
             f"{first['torch'].get('malloc', '?')} pages (jaxssl.host_malloc). Started "
             f"{m['date_utc']}, load average "
             f"{'/'.join(f'{x:.2f}' for x in m['load_avg'])} (1/5/15 min); finished "
             f"{result['finished_utc']}, load {'/'.join(f'{x:.2f}' for x in result['load_end'])}.",
             "", SUMMARY_HEADER, "|" + "---|" * 9]
    for s in result["settings"]:
        for side in SIDES:
            x = s["summary"][side]
            lines.append(f"| {s['threads']} | {side} | {x['median_ms']:.1f} | {x['p10_ms']:.1f} "
                         f"| {x['p90_ms']:.1f} | {x['images_per_s']:.1f} | "
                         f"{x['cpu_median_ms']:.1f} | {x['cores_used']:.2f} | {x['steps']} |")
    lines += ["", "| threads | jaxssl time / torch time (median wall) | (median CPU) | "
              "load avg 1 min, min-max over the rounds |", "|---|---|---|---|"]
    for s in result["settings"]:
        j, t = s["summary"]["jaxssl"], s["summary"]["torch"]
        loads = [b[k][0] for b in s["blocks"] for k in ("load_before", "load_after")]
        lines.append(f"| {s['threads']} | {j['median_ms'] / t['median_ms']:.2f} | "
                     f"{j['cpu_median_ms'] / t['cpu_median_ms']:.2f} | "
                     f"{min(loads):.2f}-{max(loads):.2f} |")
    for s in result["settings"]:
        if s.get("breakdown_rows"):
            lines += ["", f"Breakdown, {s['threads']} thread(s), median ms (wall, then "
                      "process CPU time):", "", BREAKDOWN_HEADER, "|" + "---|" * 7]
            lines += [f"| {p} | {j[0]:.1f} | {t[0]:.1f} | {j[0] / t[0]:.2f} | {j[1]:.1f} | "
                      f"{t[1]:.1f} | {j[1] / t[1]:.2f} |" for p, j, t in s["breakdown_rows"]]
            diff = s["update_vs_step"]
            lines += ["", f"jaxssl's update part against one real train step: max |difference| "
                      f"{diff:.1e}" + (" (the same update)" if diff < 1e-4 else
                                       " -- WARNING: update_part no longer mirrors the step")]
    lines += ["", "Rounds (median ms of each block; load average 1 min before the jaxssl block "
              "and after the torch block):", "",
              "| threads | round | jaxssl | torch | ratio | load before | load after |",
              "|---|---|---|---|---|---|---|"]
    for s in result["settings"]:
        for r in range(result["args"]["rounds"]):
            j, t = (b for b in s["blocks"] if b["round"] == r)
            lines.append(f"| {s['threads']} | {r + 1} | {j['median_ms']:.1f} | "
                         f"{t['median_ms']:.1f} | {j['median_ms'] / t['median_ms']:.2f} | "
                         f"{j['load_before'][0]:.2f} | {t['load_after'][0]:.2f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="dino", choices=("dino", "msn", "pmsn"),
                   help="CPU recipe (msn / pmsn need lightly)")
    p.add_argument("--batch", type=int, default=64, help="images per step (recipe: 64)")
    p.add_argument("--threads", default="both", choices=("1", "2", "both"),
                   help="CPUs / threads per framework: 1, 2, or 1 then 2")
    p.add_argument("--rounds", type=int, default=6, help="A, B rounds")
    p.add_argument("--steps-per-round", type=int, default=10, help="timed steps per block")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps after compilation")
    p.add_argument("--breakdown-reps", type=int, default=10,
                   help="timed calls of each jitted jaxssl part (0: no breakdown)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="1-block ViT, small heads (for tests)")
    p.add_argument("--jaxssl-malloc", default="huge", choices=("huge", "system"),
                   help="jaxssl's host memory: huge = huge pages for large blocks "
                        "(jaxssl.host_malloc), as python -m jaxssl.train runs (default); "
                        "system = glibc's defaults")
    p.add_argument("--torch-malloc", default="system", choices=("huge", "system"),
                   help="the same choice for the torch peer (default: its own, system)")
    p.add_argument("--out", default=None, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    for name in ("rounds", "steps_per_round", "batch"):
        if getattr(args, name) < (2 if name == "batch" else 1):
            p.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if args.warmup < 0 or args.breakdown_reps < 0:
        p.error("--warmup and --breakdown-reps must be >= 0")
    args.thread_list = [1, 2] if args.threads == "both" else [int(args.threads)]
    if max(args.thread_list) > len(os.sched_getaffinity(0)):
        p.error(f"--threads {args.threads}: this process may only use CPUs "
                f"{sorted(os.sched_getaffinity(0))}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every thread setting, prints the markdown report, writes ``--out``."""
    args = parse_args(argv)
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()},
                              "machine": machine(), "settings": []}
    with tempfile.TemporaryDirectory(prefix="peer_speed-") as log_dir:
        for threads in args.thread_list:
            setting = run_setting(args, threads, log_dir)
            setting["summary"] = {side: summarise(setting["steps"][side], args.batch)
                                  for side in SIDES}
            if setting["breakdown"]:
                setting["breakdown_rows"] = breakdown_rows(setting, setting["summary"])
            result["settings"].append(setting)
    result["finished_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["load_end"] = os.getloadavg()
    report = render(result)
    print(report, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({**result, "report": report}, f, indent=1)
    return result


if __name__ == "__main__":
    main()
