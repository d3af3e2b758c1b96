"""The supervisor of one testnet node (started by `coreledger testnet start`): runs the
node's app, waits for its ABCI port, then runs its CometBFT. They live and die as a pair:
when either exits, the other is stopped too (an app gone makes CometBFT halt anyway), and
SIGTERM stops CometBFT first, then the app. Pids go to `app.pid`, `cometbft.pid`.

    python -m block_exec.network.supervise DIR INDEX
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from block_exec.network.testnet import load, wait_for_port

_stop = False


def _request_stop(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def _end(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} supervisor: {text}", flush=True)


def main(argv: list[str]) -> int:
    directory, index = argv[0], int(argv[1])
    manifest = load(directory)
    node = manifest["nodes"][index]
    home = Path(node["home"])
    ports = node["ports"]
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    command = [sys.executable, "-m", "block_exec.cli", "node", "--db", node["db"],
               "--abci", f"tcp://127.0.0.1:{ports['abci']}",
               "--metrics", f"127.0.0.1:{ports['metrics']}", "--chain-id", manifest["chain_id"]]
    if "checkpoint_interval" in manifest:
        command += ["--checkpoint-interval", str(manifest["checkpoint_interval"])]
    if "snapshot_interval" in manifest:
        command += ["--snapshot-interval", str(manifest["snapshot_interval"])]
    with open(home / "app.log", "ab") as log:
        app = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    (home / "app.pid").write_text(f"{app.pid}\n")
    _log(f"app started, pid {app.pid}")
    if not wait_for_port(ports["abci"], 60) or app.poll() is not None:
        _log("the app did not open its ABCI port; stopping")
        _end(app)
        return 1
    with open(home / "cometbft.log", "ab") as log:
        comet = subprocess.Popen(
            [manifest["cometbft"], "start", "--home", str(home)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
    (home / "cometbft.pid").write_text(f"{comet.pid}\n")
    _log(f"cometbft started, pid {comet.pid}")
    while not _stop:
        if app.poll() is not None or comet.poll() is not None:
            _log(f"app exit {app.poll()}, cometbft exit {comet.poll()}: stopping the pair")
            _end(comet)
            _end(app)
            return 1
        time.sleep(0.2)
    _end(comet)
    _end(app)
    _log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
