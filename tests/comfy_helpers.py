"""A real ComfyUI server for tests, driven over HTTP and its websocket with the standard library only.

`ComfyServer(comfy_path, python, base)` starts `main.py --cpu` on 127.0.0.1 and a free port with
this pack loaded from outside the ComfyUI tree through `--extra-model-paths-config` (a folder under
`base` holds a symlink to the repo as its custom node, and models/avdit/ holds the checkpoints).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_workflows"
PACK_NAME = "comfyui-avdit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comfyui_version(comfy_path: str | os.PathLike) -> str:
    text = (Path(comfy_path) / "comfyui_version.py").read_text()
    return text.split('"')[-2] if '"' in text else "unknown"


def api_example(name: str) -> dict:
    return json.loads((EXAMPLES / "api" / f"{name}.json").read_text())


def example_names() -> list[str]:
    return sorted(p.stem for p in (EXAMPLES / "api").glob("*.json"))


class ComfyServer:
    """One ComfyUI process; `stop()` ends it (by its own pid) and waits for its port to close."""

    def __init__(self, comfy_path: str, python: str, base: Path, checkpoints: dict[str, Path], inputs: list[Path]):
        self.base, self.port = Path(base), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("packs", "models/avdit", "input", "output", "user"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "packs" / PACK_NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        for name, path in checkpoints.items():
            target = self.base / "models" / "avdit" / name
            if not target.exists():
                target.symlink_to(path)
        for path in inputs:
            (self.base / "input" / path.name).write_bytes(path.read_bytes())
        config = self.base / "extra_model_paths.yaml"
        config.write_text(f"avdit_tests:\n  base_path: {self.base}\n  custom_nodes: packs\n  avdit: models/avdit\n")
        self.log_path = self.base / "comfyui.log"
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--disable-api-nodes", "--extra-model-paths-config", str(config),
                   "--output-directory", str(self.base / "output"), "--input-directory", str(self.base / "input"),
                   "--user-directory", str(self.base / "user"), "--preview-method", "none",
                   # a file, not ':memory:': 0.9.1 seeds its asset tables on /object_info through new
                   # connections, which would each get an empty in-memory database ("no such table: tags")
                   "--database-url", f"sqlite:///{self.base / 'comfyui.db'}"]
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=comfy_path, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.log.close()

    # --- HTTP ------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def post(self, path: str, payload: dict, timeout: float = 30.0) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
                return response.status, json.loads(body) if body else {}
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, json.loads(body) if body else {}

    def queue(self, prompt: dict, client_id: str | None = None, extra_data: dict | None = None) -> str:
        payload = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        if extra_data is not None:
            payload["extra_data"] = extra_data
        status, body = self.post("/prompt", payload)
        if status != 200:
            raise AssertionError(f"POST /prompt answered {status}: {json.dumps(body)[:3000]}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error") or entry.get("outputs"):
                    return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_text()[-4000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def saved_files(self, entry: dict) -> list[Path]:
        files = []
        for output in entry.get("outputs", {}).values():
            for item in output.get("images", []):
                files.append(self.base / item["type"] / item["subfolder"] / item["filename"])
        return files


class WebSocket:
    """A minimal websocket client: JSON text frames in and out; binary frames (previews) read as None."""

    def __init__(self, port: int, path: str, timeout: float = 60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        header = b""
        while b"\r\n\r\n" not in header:
            header += self.sock.recv(1)
        if b" 101 " not in header.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket upgrade refused: {header[:200]!r}")

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("websocket closed")
            data += chunk
        return data

    def receive(self) -> dict | None:
        """The next JSON message, or None for a binary frame."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        payload = self._read(length)
        opcode = first & 0x0F
        if opcode == 1:
            return json.loads(payload)
        if opcode == 8:
            raise ConnectionError("websocket closed by the server")
        return None

    def send(self, text: str) -> None:
        """One masked text frame (clients must mask, RFC 6455 5.3)."""
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self) -> None:
        self.sock.close()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol (the same websocket framing as above)."""

    def __init__(self, chromium: str, profile: Path, width: int = 1600, height: int = 1000):
        self.process = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = self.process.stderr.readline().decode(errors="replace")
            if "DevTools listening on ws://" in line:
                port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
            elif not line and self.process.poll() is not None:
                raise RuntimeError("chromium exited before it listened")
        if port is None:
            raise RuntimeError("chromium did not print its DevTools address")
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        path = page["webSocketDebuggerUrl"].split(f"127.0.0.1:{port}")[1]
        self.socket = WebSocket(port, path, timeout=180)
        self.next_id = 0
        self.console: list[str] = []
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self.socket.receive()
            if message is None:
                continue
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
        elif message.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))

    def evaluate(self, expression: str, timeout: float = 60.0):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                           timeout=int(timeout * 1000))
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"page never satisfied {expression!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
