"""The tiny suite on a real Slurm: Debian's slurm-wlm and munge, one node on localhost, submitted
through workflow/profiles/slurm (snakemake-executor-plugin-slurm), checked against a local run.

Needs root (it installs packages, writes /etc/slurm/slurm.conf and starts daemons); .ci/run runs
as root. Every daemon it starts is stopped by its pid, and the slurm.conf it wrote is removed.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, run_snakemake, tiny_suite_config, write_config

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: installs slurm-wlm and munge with apt-get and starts munged, slurmctld and slurmd "
           "(.ci/run runs it as root)")

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "mungekey")
# srun inside a job (the executor's job step) drops SLURM_* variables, SLURM_CONF included, so the
# configuration has to be at the default path.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by PruneBench tests/test_slurm.py; removed when the test ends\n"
METHODS = ("random",)  # with its LoRA recovery: every kind of job but calibration, kept short


def install_slurm() -> None:
    if all(shutil.which(d) for d in DAEMONS):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb() -> int:
    """What slurmd will find (a node configured with more is drained)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 512
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, cpus: int, memory: int) -> str:
    return MARK + "\n".join([
        "ClusterName=prunebench",
        "SlurmctldHost=localhost",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.sock",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc",  # containers: no cgroups
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "MpiDefault=none",
        "ReturnToService=2",
        # No slurmdbd, so sacct has nothing to read: the executor polls squeue, which keeps
        # finished jobs for MinJobAge seconds.
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MinJobAge=3600",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


def wait_for(what: str, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.5)


@dataclass
class Cluster:
    root: Path
    daemons: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.daemons.append(subprocess.Popen([name, *args], stdout=log, stderr=subprocess.STDOUT))

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((self.root / "log").iterdir()))

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows, finished ones included (MinJobAge)."""
        out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%j|%k|%m|%l|%C"],
                             capture_output=True, text=True, check=True).stdout
        keys = ("id", "state", "name", "comment", "memory", "time_limit", "cpus")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines()]

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], capture_output=True)
        for proc in reversed(self.daemons):  # slurmd, slurmctld, then munged
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -r requirements.txt")
    install_slurm()
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
        pytest.skip(f"{SLURM_CONF} exists: this machine has its own Slurm, which the test leaves alone")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o700)
    cluster = Cluster(root)
    try:
        subprocess.run(["mungekey", "--create", f"--keyfile={root}/munge/munge.key"], check=True)
        cluster.start("munged", "--foreground", "--force", f"--socket={root}/munge/munge.sock",
                      f"--key-file={root}/munge/munge.key", f"--pid-file={root}/munge/munged.pid",
                      f"--seed-file={root}/munge/seed", f"--log-file={root}/log/munged.log")
        wait_for("munged", (root / "munge" / "munge.sock").exists)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(root, os.cpu_count() or 1, memory_mb()))
        cluster.start("slurmctld", "-D", "-i")
        cluster.start("slurmd", "-D", "-N", "localhost")
        idle = lambda: subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True,  # noqa: E731
                                      text=True).stdout.strip() == "idle"
        wait_for("the Slurm node", idle)
        yield cluster
    except Exception:
        print(cluster.log_tail())
        raise
    finally:
        cluster.stop()
        if SLURM_CONF.exists() and SLURM_CONF.read_text().startswith(MARK):
            SLURM_CONF.unlink()


def test_tiny_suite_through_slurm_equals_local_run(slurm, tmp_path, tiny_dir, data_root):
    config = tiny_suite_config(tiny_dir, data_root)
    config["methods"] = {name: config["methods"][name] for name in METHODS}
    config["threads"] = 1  # two jobs at a time on the 2-CPU node, and the same threads in both runs
    config["models"]["tiny"]["resources"] = {"mem_mb": 3000, "runtime": 20, "gpus": 0}
    configfile = write_config(tmp_path / "tiny.yaml", config)

    # The Slurm run spends much of its time waiting between status checks: the local run (the
    # reference) runs meanwhile.
    cluster = tmp_path / "slurm"
    cmd = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(cluster),
           "--configfile", str(configfile), "--profile", "workflow/profiles/slurm",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]
    run = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    local = tmp_path / "local"
    run_snakemake(local, configfile, "--profile", "workflow/profiles/default")
    _, stderr = run.communicate(timeout=1800)
    assert run.returncode == 0, f"{stderr[-8000:]}\n{slurm.log_tail()}"

    # Every job went through sbatch and finished there; the cheap local rules did not.
    jobs = [j for j in slurm.jobs() if j["name"].startswith("prunebench_")]
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs
    rule_of = {j["id"]: j["comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs}
    heavy = {"model", "prune", "recover", "evaluate", "evaluate_tuned", "efficiency"}
    assert heavy <= set(rule_of.values())
    assert not set(rule_of.values()) & {"data", "collate", "report_tables", "report_figures", "report_readme"}
    # The model's resources in the config became the sbatch request.
    for job in jobs:
        if rule_of[job["id"]] in heavy:
            assert (job["memory"], job["time_limit"], job["cpus"]) == ("3000M", "20:00", "1"), job
    logs = {p.stem for p in (cluster / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {j["id"] for j in jobs} <= logs

    assert (cluster / "results" / "summary.csv").read_bytes() == (local / "results" / "summary.csv").read_bytes()
