"""Coverage-guided fuzzing campaign (atheris/libFuzzer) over pyquorum's decoders.

    pip install -e '.[fuzz]'
    python fuzz/campaign.py --runs 300000 --target all --corpus /tmp/pyquorum-corpus

Targets (one harness each, ``fuzz/fuzz_<target>.py``; contracts in ``fuzztargets.py``):
``codec`` (a datagram after decryption), ``sealed`` (``SecureChannel.open`` on the raw
datagram, then decode), ``ipc`` (IPC frame decoders), ``config`` (corosync.conf parser),
``qb`` (the libqb endpoint's handshake and request decoders).

Each target runs in its own subprocess with ``-runs=N`` and ``-max_total_time`` and
``-timeout`` (a single input slower than that is a hang).  Its corpus directory
``CORPUS/<target>`` is seeded with valid encodings (``fuzzseeds.py``) and kept between
campaigns; crash/timeout/oom inputs go to ``CORPUS/artifacts/<target>/`` and the
libFuzzer output to ``CORPUS/logs/<target>.log``.  When a target stops on a finding
with runs and time left it is restarted (at most ``--max-restarts`` times), so one bug
does not end the campaign.  The summary (executions, crashes, hangs, corpus size and
libFuzzer's coverage counters per target) is printed and written as JSON.

Exit status: 0 when no target found anything, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGETS = ("codec", "sealed", "ipc", "config", "qb")
MAX_LEN = {"codec": 4096, "sealed": 2048, "ipc": 8192, "config": 8192, "qb": 2048}
DICTS = {"config": HERE / "config.dict"}
GRACE_S = 120  # beyond -max_total_time before the driver kills a harness
REPLAY_TIMEOUT_S = 600
# The modules whose line coverage the final corpus of each target is measured on.
COVERED = {
    "codec": ("wire/codec.py",),
    "sealed": ("wire/crypto.py", "wire/codec.py"),
    "ipc": ("wire/ipc.py", "daemon/ipcproto.py", "wire/codec.py"),
    "config": ("config/parser.py", "config/build.py", "config/load.py", "config/model.py"),
    "qb": ("wire/qbmsg.py",),
}

_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+(.*)$")
_COV = re.compile(r"\bcov: (\d+)")
_FT = re.compile(r"\bft: (\d+)")
_CORP = re.compile(r"\bcorp: (\d+)/(\S+)")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXC = re.compile(r"=== Uncaught Python exception: ===")


@dataclass
class Finding:
    kind: str  # crash, hang, oom, leak
    artifact: str
    error: str


@dataclass
class TargetResult:
    target: str
    executions: int = 0
    seconds: float = 0.0
    exec_per_second: float = 0.0
    crashes: int = 0
    hangs: int = 0
    ooms: int = 0
    findings: list[Finding] = field(default_factory=list)
    seeds: int = 0
    corpus_files: int = 0
    corpus_bytes: int = 0
    coverage_edges: int | None = None
    features: int | None = None
    line_coverage: dict[str, Any] | None = None
    new_units: int = 0
    peak_rss_mb: int = 0
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def _kind(artifact: str) -> str:
    name = Path(artifact).name
    for prefix, kind in (("crash-", "crash"), ("timeout-", "hang"), ("oom-", "oom"),
                         ("leak-", "leak"), ("slow-unit-", "slow")):
        if name.startswith(prefix):
            return kind
    return "crash"


def _parse(log: str, result: TargetResult) -> tuple[int, list[Finding]]:
    """Executions of one run, and its findings; updates the coverage counters."""
    executions = 0
    stats: dict[str, int] = {}
    findings: list[Finding] = []
    error = ""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        status = _STATUS.match(line)
        if status:
            executions = max(executions, int(status.group(1)))
            for regex, name in ((_COV, "coverage_edges"), (_FT, "features")):
                found = regex.search(status.group(3))
                if found:
                    setattr(result, name, max(getattr(result, name) or 0, int(found.group(1))))
        stat = _STAT.match(line)
        if stat:
            stats[stat.group(1)] = int(stat.group(2))
        if _EXC.search(line) and i + 1 < len(lines):
            error = lines[i + 1].strip()
        elif "ERROR: libFuzzer:" in line and not error:
            error = line.split("ERROR: ", 1)[1].strip()
        artifact = _ARTIFACT.search(line)
        if artifact:
            kind = _kind(artifact.group(1))
            if kind == "hang" and not error:
                error = "timeout: one input ran longer than -timeout"
            if kind != "slow":
                findings.append(Finding(kind, artifact.group(1), error or kind))
            error = ""
    executions = max(executions, stats.get("number_of_executed_units", 0))
    result.new_units += stats.get("new_units_added", 0)
    result.peak_rss_mb = max(result.peak_rss_mb, stats.get("peak_rss_mb", 0))
    return executions, findings


def line_coverage(target: str, corpus: Path, work: Path) -> dict[str, Any] | None:
    """Line coverage of the target's modules by its corpus (``replay.py`` under coverage.py),
    or None when coverage.py is not installed."""
    spec = importlib.util.find_spec("pyquorum")
    if importlib.util.find_spec("coverage") is None or spec is None:
        return None
    package = Path(next(iter(spec.submodule_search_locations or [])))
    files = [str(package / name) for name in COVERED[target]]
    data, report = work / f"{target}.coverage", work / f"{target}.json"
    common = [f"--data-file={data}", f"--include={','.join(files)}"]
    run = [sys.executable, "-m", "coverage", "run", "--branch", *common,
           str(HERE / "replay.py"), target, str(corpus)]
    try:
        subprocess.run(run, capture_output=True, timeout=REPLAY_TIMEOUT_S, check=True)
        subprocess.run([sys.executable, "-m", "coverage", "json", *common, "-o", str(report)],
                       capture_output=True, timeout=REPLAY_TIMEOUT_S, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        return {"error": str(exc)}
    measured = json.loads(report.read_text())
    out: dict[str, Any] = {}
    for path, entry in measured["files"].items():
        name = str(Path(path).resolve().relative_to(package))
        summary = entry["summary"]
        out[name] = {"statements": summary["num_statements"],
                     "covered": summary["covered_lines"],
                     "branches": summary.get("num_branches", 0),
                     "covered_branches": summary.get("covered_branches", 0),
                     "percent": round(summary["percent_covered"], 1)}
        for cls, centry in entry.get("classes", {}).items():
            if cls in ("RequestFramer", "FrameReader"):  # the framers in larger modules
                c = centry["summary"]
                out[f"{name}:{cls}"] = {"statements": c["num_statements"],
                                        "covered": c["covered_lines"],
                                        "percent": round(c["percent_covered"], 1)}
    return out


def _quarantine(artifact: Path, corpus: Path) -> None:
    """Move corpus files with the artifact's content next to it (``<name>.from-corpus``)."""
    if not artifact.is_file():
        return
    data = artifact.read_bytes()
    for path in corpus.iterdir():
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            path.rename(artifact.with_name(f"{artifact.name}.from-corpus-{path.name}"))


def run_target(target: str, args: argparse.Namespace) -> TargetResult:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import fuzzseeds  # here, not at the top: it imports pyquorum (the harnesses instrument it)

    corpus = Path(args.corpus).resolve()
    tdir = corpus / target
    artifacts = corpus / "artifacts" / target
    logs = corpus / "logs"
    for d in (tdir, artifacts, logs):
        d.mkdir(parents=True, exist_ok=True)
    result = TargetResult(target)
    result.seeds = fuzzseeds.write_seeds(target, tdir)
    log_path = logs / f"{target}.log"
    log_path.write_text("")
    start = time.monotonic()
    for attempt in range(args.max_restarts + 1):
        runs_left = args.runs - result.executions
        time_left = int(args.max_total_time - (time.monotonic() - start))
        if runs_left <= 0 or time_left <= 0:
            break
        cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), f"-runs={runs_left}",
               f"-max_total_time={time_left}", f"-timeout={args.timeout}",
               f"-max_len={MAX_LEN[target]}", f"-seed={args.seed + attempt}",
               f"-rss_limit_mb={args.rss_limit_mb}", "-print_final_stats=1",
               f"-artifact_prefix={artifacts}/"]
        if target in DICTS:
            cmd.append(f"-dict={DICTS[target]}")
        cmd.append(str(tdir))
        result.commands.append(shlex.join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=time_left + GRACE_S, check=False)
            output, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            err = exc.stderr or b""
            output = (out.decode(errors="replace") if isinstance(out, bytes) else out) + (
                err.decode(errors="replace") if isinstance(err, bytes) else err)
            output += f"\n[campaign] harness killed after {time_left + GRACE_S} s\n"
            code = -9
        with log_path.open("a") as log:
            log.write(f"$ {shlex.join(cmd)}\n{output}\n[exit {code}]\n")
        executions, findings = _parse(output, result)
        result.executions += executions
        result.exit_codes.append(code)
        result.findings.extend(findings)
        if code == 0 or not findings:
            break  # done (or stopped without a finding to skip: do not loop on it)
        for finding in findings:  # a corpus file that crashes would stop every restart
            _quarantine(Path(finding.artifact), tdir)
    result.restarts = len(result.exit_codes) - 1
    result.seconds = round(time.monotonic() - start, 1)
    result.exec_per_second = round(result.executions / max(result.seconds, 0.001))
    unique = {f.artifact: f for f in result.findings}.values()
    result.findings = list(unique)
    result.crashes = sum(f.kind == "crash" for f in unique)
    result.hangs = sum(f.kind == "hang" for f in unique)
    result.ooms = sum(f.kind in ("oom", "leak") for f in unique)
    files = [p for p in tdir.iterdir() if p.is_file()]
    result.corpus_files = len(files)
    result.corpus_bytes = sum(p.stat().st_size for p in files)
    if args.line_coverage:
        work = corpus / "coverage"
        work.mkdir(exist_ok=True)
        result.line_coverage = line_coverage(target, tdir, work)
    return result


def _table(results: list[TargetResult]) -> str:
    head = (f"{'target':8} {'executions':>11} {'seconds':>8} {'exec/s':>7} {'crashes':>7} "
            f"{'hangs':>5} {'ooms':>4} {'corpus':>7} {'cov':>5} {'ft':>6}")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r.target:8} {r.executions:>11,} {r.seconds:>8.1f} {r.exec_per_second:>7,} "
                    f"{r.crashes:>7} {r.hangs:>5} {r.ooms:>4} {r.corpus_files:>7} "
                    f"{r.coverage_edges or '-':>5} {r.features or '-':>6}")
    total = sum(r.executions for r in results)
    rows.append("-" * len(head))
    rows.append(f"{'total':8} {total:>11,} {sum(r.seconds for r in results):>8.1f} {'':>7} "
                f"{sum(r.crashes for r in results):>7} {sum(r.hangs for r in results):>5} "
                f"{sum(r.ooms for r in results):>4}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, required=True, help="executions per target")
    parser.add_argument("--target", default="all", choices=("all", *TARGETS))
    parser.add_argument("--corpus", required=True, help="corpus directory (kept between runs)")
    parser.add_argument("--max-total-time", type=int, default=1800,
                        help="seconds per target at most (default 1800)")
    parser.add_argument("--timeout", type=int, default=10,
                        help="seconds for one input before it is a hang (default 10)")
    parser.add_argument("--jobs", type=int, default=1, help="targets run in parallel")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's -seed")
    parser.add_argument("--max-restarts", type=int, default=3,
                        help="restarts of a target after a finding (default 3)")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--json", help="summary file (default CORPUS/summary.json)")
    parser.add_argument("--no-line-coverage", dest="line_coverage", action="store_false",
                        help="skip replaying each final corpus under coverage.py")
    args = parser.parse_args(argv)
    if args.runs <= 0 or args.jobs <= 0 or args.max_total_time <= 0:
        parser.error("--runs, --jobs and --max-total-time must be positive")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    targets = list(TARGETS) if args.target == "all" else [args.target]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda t: run_target(t, args), targets))
    summary: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, "fuzz/campaign.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "python": sys.version.split()[0],
        "runs_per_target": args.runs,
        "max_total_time_per_target": args.max_total_time,
        "timeout_per_input": args.timeout,
        "jobs": args.jobs,
        "wall_seconds": round(time.monotonic() - started, 1),
        "total_executions": sum(r.executions for r in results),
        "total_crashes": sum(r.crashes for r in results),
        "total_hangs": sum(r.hangs for r in results),
        "total_ooms": sum(r.ooms for r in results),
        "targets": [asdict(r) for r in results],
    }
    print(_table(results))
    print(f"\nwall time {summary['wall_seconds']} s; cov/ft: libFuzzer's edge and feature "
          "counters over the instrumented pyquorum bytecode")
    for r in results:
        if r.line_coverage is None:
            print(f"line coverage of {r.target}: not measured (pip install coverage)")
            continue
        parts = [f"{name} {c['percent']}% ({c['covered']}/{c['statements']} lines)"
                 if "percent" in c else f"{name}: {c}" for name, c in r.line_coverage.items()]
        print(f"line coverage of the final {r.target} corpus: " + "; ".join(parts))
    for r in results:
        for f in r.findings:
            print(f"FINDING {r.target} {f.kind}: {f.error}\n  input: {f.artifact}\n  replay: "
                  f"python fuzz/fuzz_{r.target}.py {f.artifact}")
    json_path = Path(args.json) if args.json else Path(args.corpus) / "summary.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {json_path}")
    found = summary["total_crashes"] + summary["total_hangs"] + summary["total_ooms"]
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
