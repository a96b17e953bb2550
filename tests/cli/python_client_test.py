#!/usr/bin/env python3
"""Runs the Python client example against a real `tapeloop serve` on a loopback ephemeral port.
usage: python_client_test.py TAPELOOP_BINARY SOURCE_DIR"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

binary, source = sys.argv[1], sys.argv[2]
db = os.path.join(tempfile.mkdtemp(prefix="tapeloop_pytest_"), "t.db")
server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db", db,
                           "--models-dir", os.path.join(source, "models")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
try:
    line = server.stdout.readline()
    m = re.search(r":(\d+) \(db", line)
    assert m, f"no port in first line: {line!r}"
    port = int(m.group(1))
    out = subprocess.run([sys.executable, os.path.join(source, "examples/python/tapeloop_client.py"),
                          "--target", f"127.0.0.1:{port}", "info"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["health"] == "SERVING", got
    info = got["server_info"]
    version = open(os.path.join(source, "CMakeLists.txt")).read()
    want = re.search(r"project\(tapeloop VERSION (\S+)", version).group(1)
    assert info["version"] == want, (info, want)
    assert info["db_schema_version"] >= 3, info
    assert info["uptime_seconds"] >= 0, info

    # Server reflection lists our services (compiled from the test's own reflection subset).
    import grpc
    from grpc_tools import protoc
    out_dir = tempfile.mkdtemp(prefix="tapeloop_refl_")
    proto_dir = os.path.join(source, "tests/cli/protos")
    assert protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out_dir}",
                        f"--grpc_python_out={out_dir}", "reflection.proto"]) == 0
    sys.path.insert(0, out_dir)
    import reflection_pb2, reflection_pb2_grpc
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    replies = list(stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"tapeloop.v1.Server", "grpc.health.v1.Health", "tapeloop.v1.Agent",
            "tapeloop.v1.Environment", "tapeloop.v1.Evaluation"} <= names, names

    # Agent: streamed episodes (the oracle, and the bundled mamba2-pointer, exact at 30 digits).
    def client(*args):
        return subprocess.run([sys.executable,
                               os.path.join(source, "examples/python/tapeloop_client.py"),
                               "--target", f"127.0.0.1:{port}"] + list(args),
                              capture_output=True, text=True, timeout=300)

    passed = 1
    for policy, length, mode in (("oracle", "40", "pointer"), ("oracle", "25", "calculator"),
                                 ("mamba2-pointer", "30", "pointer")):
        out = client("episode", "--policy", policy, "--length", length, "--mode", mode,
                     "--seed", "11", "--index", "2")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        summary = json.loads(lines[-1])
        assert summary["correct"] and summary["stored"], summary
        assert summary["final_answer"] == summary["expected"], summary
        passed += 1
    # --json: one event per line, every token between started and finished.
    out = client("episode", "--json", "--length", "12", "--seed", "3")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert "started" in events[0] and "finished" in events[-1], (events[0], events[-1])
    tokens = [e["token"] for e in events if "token" in e]
    started, finished = events[0]["started"], events[-1]["finished"]
    assert len(started["prompt_tokens"]) + len(tokens) == int(finished["total_tokens"])
    assert [int(t["position"]) for t in tokens] == list(
        range(len(started["prompt_tokens"]), int(finished["total_tokens"])))
    calls = [e["tool_call"]["call_id"] for e in events if "tool_call" in e]
    results = [e["tool_result"]["call_id"] for e in events if "tool_result" in e]
    assert calls == results and len(calls) == int(finished["tool_steps"]), (len(calls),)
    passed += 1
    # code_debug (no --mode: the task's default, interactive): the oracle fixes the program;
    # the bundled code-debug model's commands stream as debugger tool calls.
    for policy in ("oracle", "nemotron_h-code-debug"):
        out = client("episode", "--json", "--task", "code_debug", "--length", "3", "--seed", "5",
                     "--policy", policy)
        assert out.returncode == 0, out.stderr
        events = [json.loads(line) for line in out.stdout.splitlines()]
        started, finished = events[0]["started"], events[-1]["finished"]
        assert started["mode"] == "interactive" and started["task"] == "code_debug", started
        names = {e["tool_call"]["name"] for e in events if "tool_call" in e}
        commands = [json.loads(e["tool_call"]["arguments_json"])["command"]
                    for e in events if "tool_call" in e]
        assert names == {"debugger"} and commands[0] == "run", (names, commands)
        assert finished["stored"] and len(commands) == int(finished["tool_steps"]), finished
        if policy == "oracle":
            assert finished["correct"] and finished["stop_reason"] == "eos", finished
        passed += 1

    # Environment: the example's own agent reads the operands through the tools and submits.
    for task, mode in (("addition", "pointer"), ("multiplication", "pointer"),
                       ("multiplication-n1", "calculator"), ("addition", "direct")):
        out = client("env", "--task", task, "--mode", mode, "--length", "17", "--seed", "5")
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout.splitlines()[-1])
        assert summary["terminated"] and summary["reward"] == 1.0, summary
        passed += 1
    out = client("env", "--length", "9", "--answer", "0")  # a wrong answer
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["terminated"] and summary["reward"] == 0.0, summary
    out = client("env", "--length", "9", "--max-steps", "6")  # too few steps to read the tape
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["truncated"] and not summary["terminated"] and summary["steps"] == 6, summary
    # Evaluation: a run of the bundled model and the oracle, polled to the end.
    out = client("eval", "--models", "mamba2-pointer,oracle", "--lengths", "4,9",
                 "--episodes", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    cells = [json.loads(line) for line in lines if line.startswith('{"model"')]
    assert len(cells) == 4 and all(c["accuracy"] == 1.0 and c["episodes"] == 3 for c in cells), cells
    progress = [json.loads(line) for line in lines if line.startswith('{"evaluation_id"')]
    assert progress[-1]["state"] == "EVALUATION_STATE_SUCCEEDED", progress
    assert progress[-1]["episodes_done"] == 12, progress
    assert "| mamba2-pointer / pointer | 5->9 (100%) | 100% | 100% |" in out.stdout, out.stdout
    out = client("eval", "--models", "../models", "--lengths", "4")
    assert out.returncode == 1 and "INVALID_ARGUMENT: models:" in out.stderr, out.stderr
    passed += 1
    out = client("episode", "--length", "0")
    assert out.returncode == 1 and "INVALID_ARGUMENT: length" in out.stderr, out.stderr
    out = client("episode", "--policy", "no-such-model")
    assert out.returncode == 1 and "NOT_FOUND: policy" in out.stderr, out.stderr
    passed += 4
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=30)
    assert rc == 0, (rc, server.stderr.read())
    print(f"python client example: {passed} passed, 0 failed")
finally:
    if server.poll() is None:
        server.kill()
