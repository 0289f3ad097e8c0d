#!/usr/bin/env python3
"""A raftq producer and worker in Python, over the gRPC API in proto/.

Needs only Debian's python3-grpcio and python3-grpc-tools
(apt-get install python3-grpcio python3-grpc-tools): the Python stubs are
generated from proto/ into a temporary directory each run, so nothing
generated is committed and they never drift from the .proto files.

    python3 examples/python/raftq_example.py                # against `make run`
    python3 examples/python/raftq_example.py --brokers 127.0.0.1:7101 --queue py

It enqueues one job (producer), leases it with Fetch and acknowledges it
(worker), then reads the job back and prints one JSON line:
{"job_id": ..., "state": "succeeded", "payload": ...}. Exit status 0 only
when the job ended succeeded.

With TLS and auth on (RAFTQ_TLS=1 make run), set RAFTQ_TLS_CA to the CA
file and RAFTQ_AUTH_TOKEN to a token (producer and worker roles, or admin).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

import grpc
from google.protobuf import duration_pb2
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def load_stubs(out_dir):
    """Generate the raftq.v1 modules from proto/ into out_dir and import them."""
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["grpc_tools.protoc", "-I" + PROTO_DIR, "--python_out=" + out_dir, "--grpc_python_out=" + out_dir]
    if os.path.isdir(include):  # the pip wheel ships the well-known types here;
        args.append("-I" + include)  # Debian's protoc finds them in /usr/include
    for name in ("broker.proto", "results.proto"):
        args.append(os.path.join(PROTO_DIR, "raftq", "v1", name))
    if protoc.main(args) != 0:
        sys.exit("protoc failed on " + PROTO_DIR)
    sys.path.insert(0, out_dir)
    from raftq.v1 import broker_pb2, broker_pb2_grpc  # noqa: E402 (generated above)
    return broker_pb2, broker_pb2_grpc


def channel(addr):
    """A channel to one broker, with TLS and a bearer token when configured."""
    ca = os.environ.get("RAFTQ_TLS_CA")
    if not ca:
        return grpc.insecure_channel(addr)
    with open(ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    token = os.environ.get("RAFTQ_AUTH_TOKEN")
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(addr, creds)


def find_leader(pb, pb_grpc, brokers, timeout):
    """Asks each broker who leads (Cluster.Status) until one knows.

    Followers forward writes themselves, so any broker would do; the
    leader saves the extra hop."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        for addr in brokers:
            try:
                st = pb_grpc.ClusterStub(channel(addr)).Status(pb.StatusRequest(), timeout=3)
                if st.leader_addr:
                    return st.leader_addr
            except grpc.RpcError as e:
                last = e
        time.sleep(0.2)
    sys.exit("no broker knows a leader (%s): %s" % (",".join(brokers), last))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default=os.environ.get("RAFTQ_BROKERS", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"))
    p.add_argument("--queue", default="python")
    p.add_argument("--payload", default="hello from python")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    a = p.parse_args()
    brokers = [b.strip() for b in a.brokers.split(",") if b.strip()]

    tmp = tempfile.mkdtemp(prefix="raftq-py-")
    try:
        pb, pb_grpc = load_stubs(tmp)
        broker = pb_grpc.BrokerStub(channel(find_leader(pb, pb_grpc, brokers, a.timeout)))

        # Producer: enqueue one job. The idempotency key makes a retry of
        # this call safe (the broker answers duplicate=true, no second job).
        spec = pb.JobSpec(queue=a.queue, type="echo", payload=a.payload.encode(),
                          idempotency_key="py-" + str(uuid.uuid4()))
        job_id = broker.Enqueue(pb.EnqueueRequest(jobs=[spec]), timeout=a.timeout).results[0].job_id

        # Worker: lease it (long-poll up to 5 s), do the work, acknowledge
        # with the lease token the fetch returned.
        job = None
        deadline = time.time() + a.timeout
        while job is None and time.time() < deadline:
            resp = broker.Fetch(pb.FetchRequest(queues=[a.queue], max_jobs=1, worker_id="python-example",
                                                max_wait=duration_pb2.Duration(seconds=5)), timeout=a.timeout)
            for j in resp.jobs:
                if j.id == job_id:
                    job = j
                else:  # someone else's job in this queue: give it back at once
                    broker.Nack(pb.NackRequest(job_id=j.id, lease_token=j.lease_token,
                                               error="not this example's job",
                                               retry_after=duration_pb2.Duration()), timeout=a.timeout)
        if job is None:
            sys.exit("job %s was not fetched within %ss" % (job_id, a.timeout))
        result = job.payload.decode()  # the "work": echo
        broker.Ack(pb.AckRequest(job_id=job.id, lease_token=job.lease_token), timeout=a.timeout)

        got = broker.GetJob(pb.GetJobRequest(job_id=job_id, consistency=pb.CONSISTENCY_LINEARIZABLE),
                            timeout=a.timeout).job
        state = pb.JobState.Name(got.state).removeprefix("JOB_STATE_").lower()
        print(json.dumps({"job_id": job_id, "state": state, "payload": result}))
        return 0 if state == "succeeded" else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
