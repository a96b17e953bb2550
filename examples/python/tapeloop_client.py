#!/usr/bin/env python3
"""A minimal Python client for a tapeloop server, using Debian's python3-grpcio and
python3-grpc-tools. Stubs are generated from the repository's .proto files on first use.

usage: tapeloop_client.py [--target 127.0.0.1:7070] [--proto-dir PROTO_DIR] info
"""
import argparse
import importlib
import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def load_stubs(proto_dir):
    """Compiles the tapeloop protos and grpc.health.v1 into a temp dir and imports them.

    health.proto is compiled from its own folder so its Python module is top-level
    (`health_pb2`): a `grpc.health` package would shadow grpcio's own `grpc` package."""
    out = tempfile.mkdtemp(prefix="tapeloop_py_")
    tapeloop_dir = os.path.join(proto_dir, "tapeloop")
    protos = sorted(os.path.relpath(os.path.join(root, f), proto_dir)
                    for root, _, files in os.walk(tapeloop_dir) for f in files
                    if f.endswith(".proto"))
    health_dir = os.path.join(proto_dir, "grpc", "health", "v1")
    for include, files in ((proto_dir, protos), (health_dir, ["health.proto"])):
        args = ["protoc", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        if protoc.main(args + files) != 0:
            raise RuntimeError(f"protoc failed on {files} in {include}")
    sys.path.insert(0, out)
    mods = {"health": importlib.import_module("health_pb2"),
            "health_grpc": importlib.import_module("health_pb2_grpc")}
    for rel in protos:
        stem = rel[:-len(".proto")].replace(os.sep, ".")
        mods[stem] = importlib.import_module(stem + "_pb2")
        mods[stem + "_grpc"] = importlib.import_module(stem + "_pb2_grpc")
    return mods


class Client:
    def __init__(self, target, proto_dir=DEFAULT_PROTO_DIR, timeout=10.0):
        self.m = load_stubs(proto_dir)
        self.channel = grpc.insecure_channel(target)
        self.timeout = timeout

    def health(self, service=""):
        h = self.m["health"]
        stub = self.m["health_grpc"].HealthStub(self.channel)
        resp = stub.Check(h.HealthCheckRequest(service=service), timeout=self.timeout)
        return h.HealthCheckResponse.ServingStatus.Name(resp.status)

    def server_info(self):
        s = self.m["tapeloop.v1.server"]
        stub = self.m["tapeloop.v1.server_grpc"].ServerStub(self.channel)
        info = stub.GetServerInfo(s.GetServerInfoRequest(), timeout=self.timeout)
        return {"version": info.version, "cuda_compiled": info.cuda_compiled,
                "gpu_visible": info.gpu_visible, "uptime_seconds": info.uptime_seconds,
                "db_schema_version": info.db_schema_version}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="127.0.0.1:7070")
    ap.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    ap.add_argument("command", choices=["info"])
    a = ap.parse_args()
    c = Client(a.target, a.proto_dir)
    if a.command == "info":
        print(json.dumps({"health": c.health(), "server_info": c.server_info()}))


if __name__ == "__main__":
    main()
