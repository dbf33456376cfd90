"""Ray jobs: submit a script with parameters, follow its log, then read the job as events.

The script (written to a temporary folder, uploaded as the job's working_dir) reads its
parameters with `er.job_params()`. Without an address the example starts its own Ray head
with the job server on 127.0.0.1 (`eventray_rayjobs.testing.RayJobCluster`, stopped at the
end); with one, it submits there.

    python examples/ray_jobs.py                         # a Ray head of its own
    python examples/ray_jobs.py http://127.0.0.1:8265   # an existing cluster's job server
"""

import asyncio
import sys
import tempfile
from pathlib import Path

import eventray as er
from eventray_rayjobs.testing import RayJobCluster

SCRIPT = """\
import eventray as er

params = er.job_params()
print(f"hello {params['who']}: {len(params['items'].split(','))} items")
"""


async def main(address: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        await asyncio.to_thread(Path(folder, "hello_job.py").write_text, SCRIPT)
        async with er.JobClient(address) as jobs:
            job = await jobs.submit("python hello_job.py", working_dir=folder,
                                    params={"who": "Ray, and you", "items": "a,b,c"})
            async for line in job.logs(follow=True):
                if line.startswith("hello"):
                    print(line)
            info = await job.wait()
            print(f"{info.entrypoint} {info.status}")

    async with er.connect("memory") as bus:
        events = await bus.from_source(
            {"kind": "ray-job-source", "address": address, "submission_id": job.id}
        ).filter(lambda event: event["type"] == "status").collect()
        print("last status event:", events[-1]["status"])


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with RayJobCluster(num_cpus=1) as cluster:
            asyncio.run(main(cluster.address))
