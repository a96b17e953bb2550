#!/usr/bin/env python3
"""A minimal Python client for a tapeloop server, using Debian's python3-grpcio and
python3-grpc-tools. Stubs are generated from the repository's .proto files on first use.

usage: tapeloop_client.py [--target 127.0.0.1:7070] [--proto-dir PROTO_DIR] [--api-key KEY]
                          info | episode [options] | env [options] | eval [options]

  info      health and server facts, as JSON
  episode   run an agent episode server-side (tapeloop.v1.Agent.RunEpisode) and print it as it
            streams: the trajectory (observations in braces), then a JSON summary line
            (--json: one JSON object per event instead)
  env       play an episode of the tool environment (tapeloop.v1.Environment) as an external
            agent would: this script's own little agent reads the operands off the pointer
            memory (pointer mode) or asks the calculator (calculator mode), computes the answer
            and submits it; one JSON line per step, then a summary line
  eval      start an evaluation run server-side (tapeloop.v1.Evaluation; --suite, or
            --models/--task/--lengths), poll it until it ends (a JSON progress line each
            time more episodes are stored), then print the report's tables and one JSON line
            per cell
"""
import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def run_protoc(include, files, out):
    """Compiles `files` (relative to `include`) to Python modules and gRPC stubs in `out`.

    Prefers the system protoc with grpc_python_plugin (Debian's protobuf-compiler and
    protobuf-compiler-grpc: protoc 3.21, which knows proto3 `optional`); falls back to
    grpc_tools' bundled protoc (3.5 on Debian 12, which does not)."""
    protoc_bin, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc_bin and plugin:
        done = subprocess.run([protoc_bin, f"-I{include}", f"--python_out={out}",
                               f"--plugin=protoc-gen-grpc_python={plugin}",
                               f"--grpc_python_out={out}"] + files,
                              capture_output=True, text=True)
        if done.returncode == 0:
            return
        sys.stderr.write(done.stderr)
    from grpc_tools import protoc
    args = ["protoc", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        raise RuntimeError(f"protoc failed on {files} in {include}")


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
        run_protoc(include, files, out)
    sys.path.insert(0, out)
    mods = {"health": importlib.import_module("health_pb2"),
            "health_grpc": importlib.import_module("health_pb2_grpc")}
    for rel in protos:
        stem = rel[:-len(".proto")].replace(os.sep, ".")
        mods[stem] = importlib.import_module(stem + "_pb2")
        mods[stem + "_grpc"] = importlib.import_module(stem + "_pb2_grpc")
    return mods


class Client:
    def __init__(self, target, proto_dir=DEFAULT_PROTO_DIR, timeout=10.0, api_key=""):
        self.m = load_stubs(proto_dir)
        self.channel = grpc.insecure_channel(target)
        self.timeout = timeout
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else []

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


    # --- tapeloop.v1.Agent -------------------------------------------------------------

    def run_episode(self, task="addition", length=10, seed=0, index=0, mode="",
                    policy="oracle", temperature=0.0, timeout=600.0):
        """Yields the episode's events (EpisodeEvent messages) as they stream."""
        a = self.m["tapeloop.v1.agent"]
        stub = self.m["tapeloop.v1.agent_grpc"].AgentStub(self.channel)
        request = a.RunEpisodeRequest(task=task, length=length, seed=seed, index=index,
                                      mode=mode, policy=policy, temperature=temperature)
        for message in stub.RunEpisode(request, timeout=timeout, metadata=self.metadata):
            yield from message.events

    def get_episode(self, episode_id):
        a = self.m["tapeloop.v1.agent"]
        stub = self.m["tapeloop.v1.agent_grpc"].AgentStub(self.channel)
        return stub.GetEpisode(a.GetEpisodeRequest(episode_id=episode_id),
                               timeout=self.timeout, metadata=self.metadata)

    # --- tapeloop.v1.Environment -------------------------------------------------------

    def env_stub(self):
        return self.m["tapeloop.v1.environment_grpc"].EnvironmentStub(self.channel)

    def env_reset(self, **fields):
        e = self.m["tapeloop.v1.environment"]
        return self.env_stub().Reset(e.EnvResetRequest(**fields), timeout=self.timeout,
                                     metadata=self.metadata)

    def env_step(self, env_id, call_id, name, arguments):
        """One tool call; `arguments` is a dict (numbers of many digits as strings)."""
        e = self.m["tapeloop.v1.environment"]
        call = e.EnvToolCall(id=call_id, name=name, arguments_json=json.dumps(arguments))
        return self.env_stub().Step(e.EnvStepRequest(env_id=env_id, call=call),
                                    timeout=self.timeout, metadata=self.metadata)

    def env_close(self, env_id):
        e = self.m["tapeloop.v1.environment"]
        return self.env_stub().Close(e.EnvCloseRequest(env_id=env_id), timeout=self.timeout,
                                     metadata=self.metadata)


    # --- tapeloop.v1.Evaluation --------------------------------------------------------

    def eval_stub(self):
        return self.m["tapeloop.v1.evaluation_grpc"].EvaluationStub(self.channel)

    def start_evaluation(self, **fields):
        v = self.m["tapeloop.v1.evaluation"]
        return self.eval_stub().StartEvaluation(v.StartEvaluationRequest(**fields),
                                                timeout=self.timeout, metadata=self.metadata)

    def get_evaluation(self, evaluation_id):
        v = self.m["tapeloop.v1.evaluation"]
        return self.eval_stub().GetEvaluation(
            v.GetEvaluationRequest(evaluation_id=evaluation_id), timeout=self.timeout,
            metadata=self.metadata)

    def state_name(self, state):
        return self.m["tapeloop.v1.evaluation"].EvaluationState.Name(state)


def run_evaluation(client, a):
    """Starts (or resumes) a run, polls it to the end, prints the report and the cells."""
    import time
    fields = {"episodes": a.episodes}
    if a.suite:
        fields["suite"] = a.suite
    else:
        fields.update(models=a.models.split(","), tasks=[a.task],
                      lengths=[int(x) for x in a.lengths.split(",")])
    run = client.start_evaluation(**fields)
    done = -1
    while True:
        run = client.get_evaluation(run.evaluation_id)
        state = client.state_name(run.state)
        if run.episodes_done != done or state != "EVALUATION_STATE_RUNNING":
            done = run.episodes_done
            print(json.dumps({"evaluation_id": run.evaluation_id, "state": state,
                              "episodes_done": run.episodes_done,
                              "episodes_planned": run.episodes_planned}), flush=True)
        if state != "EVALUATION_STATE_RUNNING":
            break
        time.sleep(0.5)
    print(run.report_markdown, end="")
    for c in run.cells:
        print(json.dumps({"model": c.model, "mode": c.mode, "task": c.task, "length": c.length,
                          "episodes": c.episodes, "accuracy": c.accuracy}))
    if state != "EVALUATION_STATE_SUCCEEDED":
        print(f"tapeloop_client: evaluation {state}: {run.error}", file=sys.stderr)
        sys.exit(1)


def print_episode(client, a):
    """Streams an episode: the trajectory text (observations in braces) or JSON events."""
    from google.protobuf import json_format
    agent = client.m["tapeloop.v1.agent"]
    observation = agent.TokenRole.Value("TOKEN_ROLE_OBSERVATION")
    summary = None
    for event in client.run_episode(a.task, a.length, a.seed, a.index, a.mode, a.policy,
                                    a.temperature):
        kind = event.WhichOneof("event")
        if a.json:
            d = json_format.MessageToDict(event, preserving_proto_field_name=True)
            # bytes fields as text (MessageToDict writes them base64)
            for key, field, msg in (("token", "text", event.token),
                                    ("tool_result", "text", event.tool_result),
                                    ("finished", "final_answer", event.finished)):
                if key in d and field in d[key]:
                    d[key][field] = getattr(msg, field).decode("utf-8", "replace")
            print(json.dumps(d))
        elif kind == "started":
            sys.stdout.write(event.started.prompt)
        elif kind == "token":
            text = event.token.text.decode("utf-8", "replace")
            sys.stdout.write("{" + text + "}" if event.token.role == observation else text)
        if kind == "finished":
            f = event.finished
            summary = {"episode_id": f.episode_id,
                       "final_answer": f.final_answer.decode("utf-8", "replace"),
                       "expected": f.expected, "correct": f.correct,
                       "stop_reason": f.stop_reason, "total_tokens": f.total_tokens,
                       "generated_tokens": f.generated_tokens, "tool_steps": f.tool_steps,
                       "wall_ms": round(f.wall_ms, 3), "stored": f.stored}
    if not a.json:
        sys.stdout.write("\n")
        print(json.dumps(summary))
    sys.stdout.flush()


def play_env(client, a):
    """A tiny external agent: reads the operands through the tools, computes, submits."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # answers of many digits
    reset = client.env_reset(task=a.task, length=a.length, seed=a.seed, index=a.index,
                             mode=a.mode, max_steps=a.max_steps)
    env_id, calls = reset.env_id, [0]
    tools = [t.name for t in reset.tools]
    print(json.dumps({"env_id": env_id, "observation": reset.observation, "tools": tools,
                      "info": json.loads(reset.info_json)}))
    last = None

    def step(name, arguments):
        nonlocal last
        calls[0] += 1
        last = client.env_step(env_id, f"call-{calls[0]}", name, arguments)
        o = last.observation
        print(json.dumps({"call": {"id": o.call_id, "name": name, "arguments": arguments},
                          "text": o.text, "is_error": o.is_error, "reward": last.reward,
                          "terminated": last.terminated, "truncated": last.truncated}))
        return last

    prompt = reset.instance.prompt
    if "pointer_memory" in tools:
        # Read the whole input with pointer 1: new, then read / right until [END].
        step("pointer_memory", {"op": "new", "pointer": 1})
        prompt = ""
        while not (last.terminated or last.truncated):
            r = step("pointer_memory", {"op": "read", "pointer": 1})
            if r.observation.is_error or r.observation.text == "[END]":
                break
            prompt += r.observation.text
            if not (r.terminated or r.truncated):
                step("pointer_memory", {"op": "right", "pointer": 1})
    over = last is not None and (last.terminated or last.truncated)
    if not over:  # (reading the tape may have used up max_steps)
        op = "*" if "*" in prompt else "+"
        left, right = prompt.rstrip("=").split(op)
        if "calculator" in tools:
            r = step("calculator", {"op": "mul" if op == "*" else "add", "a": left, "b": right})
            answer = r.observation.text
        else:
            answer = str(int(left) * int(right) if op == "*" else int(left) + int(right))
        if a.answer is not None:
            answer = a.answer  # e.g. a wrong answer, to see reward 0
        if not (last and (last.terminated or last.truncated)):
            step("submit", {"answer": answer})
    closed = client.env_close(env_id)
    print(json.dumps({"env_id": env_id, "steps": closed.steps, "reward": last.reward,
                      "terminated": last.terminated, "truncated": last.truncated,
                      "info": json.loads(last.info_json)}))


def main():
    doc = __doc__.splitlines()
    ap = argparse.ArgumentParser(description=" ".join(doc[:2]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(doc[3:]))
    ap.add_argument("--target", default="127.0.0.1:7070")
    ap.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    ap.add_argument("--api-key", default="")
    ap.add_argument("command", choices=["info", "episode", "env", "eval"])
    ap.add_argument("--task", default="addition")
    ap.add_argument("--length", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--mode", default="",
                    help="default: the task's (pointer; interactive for code_debug)")
    ap.add_argument("--policy", default="oracle", help="episode: a model name or oracle")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--json", action="store_true", help="episode: one JSON object per event")
    ap.add_argument("--max-steps", type=int, default=0, help="env: 0 = server default")
    ap.add_argument("--answer", default=None, help="env: submit this instead")
    ap.add_argument("--suite", default="", help="eval: a named suite")
    ap.add_argument("--models", default="oracle", help="eval: model names, comma-separated")
    ap.add_argument("--lengths", default="5,10", help="eval: comma-separated")
    ap.add_argument("--episodes", type=int, default=0, help="eval: per cell and seed")
    a = ap.parse_args()
    c = Client(a.target, a.proto_dir, api_key=a.api_key)
    try:
        if a.command == "info":
            print(json.dumps({"health": c.health(), "server_info": c.server_info()}))
        elif a.command == "episode":
            print_episode(c, a)
        elif a.command == "eval":
            run_evaluation(c, a)
        else:
            play_env(c, a)
    except grpc.RpcError as e:
        print(f"tapeloop_client: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
