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
server = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db", db],
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
    assert {"tapeloop.v1.Server", "grpc.health.v1.Health"} <= names, names
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=30)
    assert rc == 0, (rc, server.stderr.read())
    print("python client example: 1 passed, 0 failed")
finally:
    if server.poll() is None:
        server.kill()
