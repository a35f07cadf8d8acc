"""Starting Celer's and llama.cpp's HTTP servers for one model, and the few requests the greedy check makes."""
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"POST {url} -> {e.code}: {e.read().decode(errors='replace')[:500]}")


@contextlib.contextmanager
def running(command, health_url, log_path, env=None, startup_s=600):
    """Runs a server until the block ends; fails with its log's tail if it exits or is not healthy in time."""
    with open(log_path, "w") as log:
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            raise SystemExit(f"cannot start {command[0]}: {e.strerror}")
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited with {process.returncode} before serving:\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(health_url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{command[0]} was not healthy after {startup_s} s:\n{tail(log_path)}")
            time.sleep(0.5)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def tail(path, lines=30):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


class Celer:
    def __init__(self, celer, model_dir, max_model_len, log_path, env):
        self.port = free_port()
        self.name = "model"
        self.command = [celer, "serve", model_dir, "--port", str(self.port), "--served-model-name", self.name,
                        "--max-model-len", str(max_model_len)]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path, self.env = log_path, env

    def run(self):
        return running(self.command, self.base + "/health", self.log_path, self.env)

    def tokenize(self, text):
        return post(self.base + "/tokenize", {"model": self.name, "prompt": text})["tokens"]

    def greedy(self, prompt_ids, n, top):
        """The generated ids and, per step, {id: logprob} of the top tokens."""
        reply = post(self.base + "/v1/completions", {
            "model": self.name, "prompt": prompt_ids, "max_tokens": n, "temperature": 0, "ignore_eos": True,
            "logprobs": top, "return_tokens_as_token_ids": True})
        logprobs = reply["choices"][0]["logprobs"]
        ids = [int(t.removeprefix("token_id:")) for t in logprobs["tokens"]]
        tops = [{int(t.removeprefix("token_id:")): p for t, p in step.items()} for step in logprobs["top_logprobs"]]
        return ids, tops


class LlamaServer:
    def __init__(self, bin_dir, gguf, max_model_len, threads, log_path):
        self.port = free_port()
        self.command = [os.path.join(bin_dir, "llama-server"), "-m", gguf, "--port", str(self.port), "-t", str(threads),
                        "-c", str(max_model_len), "-np", "1"]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path

    def run(self):
        return running(self.command, self.base + "/health", self.log_path)

    def tokenize(self, text):
        return post(self.base + "/tokenize", {"content": text, "add_special": True})["tokens"]

    def greedy(self, prompt_ids, n, top):
        """The generated ids and, per step, {id: logprob} of the top tokens (from the raw logits: without
        post_sampling_probs the server takes them before the samplers)."""
        # top_k 1 is argmax whatever the other samplers do; return_tokens gives the ids.
        reply = post(self.base + "/completion", {
            "prompt": prompt_ids, "n_predict": n, "temperature": 0, "top_k": 1, "ignore_eos": True,
            "return_tokens": True, "cache_prompt": False, "n_probs": top})
        tops = [{t["id"]: t["logprob"] for t in step["top_logprobs"]} for step in reply["completion_probabilities"]]
        return reply["tokens"], tops
