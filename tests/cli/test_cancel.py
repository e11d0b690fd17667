"""Ctrl-C during an upload to S3: a real ``rlreg import`` process gets SIGINT mid-upload.

It must stop promptly (not run the upload on to 100%), abort its multipart uploads, record nothing,
and exit 130 with one line. The control: multipart uploads were in flight when the signal went.
"""

from __future__ import annotations

import signal
import time

import boto3
import pytest
from clihelpers import Runner

from rlreg import exitcodes

pytestmark = pytest.mark.s3


def big_checkpoint(path):
    """A PPO CartPole module of about 130 MiB (two 4096x4096 layers per net), saved at ``path``."""
    import gymnasium as gym

    from rlmodule import RLModuleSpec
    from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

    env = gym.make("CartPole-v1")
    module = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=env.observation_space,
                          action_space=env.action_space, model_config_dict={"hidden": [4096, 4096]},
                          catalog_class=PPOCatalog).build()
    return module.save_to_path(str(path))


def uploads(client, bucket):
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def started(client, bucket) -> bool:
    """An upload is under way: a multipart upload open or a first object stored."""
    return bool(uploads(client, bucket)) or client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) > 0


def test_ctrl_c_during_an_s3_import_stops_aborts_and_records_nothing(tmp_path, s3_server, s3_bucket):
    checkpoint = big_checkpoint(tmp_path / "ckpt")
    bucket = s3_bucket.removeprefix("s3://")
    client = boto3.client("s3", endpoint_url=s3_server)
    home = tmp_path / "home"
    home.mkdir()
    runner = Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache"), "RLREG_STORAGE_URL": f"{s3_bucket}/m"})
    proc = runner.popen("import", "big", checkpoint)
    deadline = time.monotonic() + 300
    while not started(client, bucket):
        assert proc.poll() is None, f"finished before any upload was seen: {proc.communicate()}"
        assert time.monotonic() < deadline, "no upload began"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # the control above: the upload had begun
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - sent
    print(f"rlreg import stopped {stopped_after:.2f} s after SIGINT")  # the figure for the report (-s)
    assert proc.returncode == exitcodes.INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "rlreg: interrupted" and "Traceback" not in err, err
    assert stopped_after < 10, f"took {stopped_after:.1f} s to stop"  # a loaded CI machine; bench for speed
    assert uploads(client, bucket) == []  # every multipart upload aborted
    from registry import Registry

    with Registry(f"sqlite:///{home / 'rlreg.db'}", f"{s3_bucket}/m") as reg:
        assert reg.models() == []  # nothing recorded

