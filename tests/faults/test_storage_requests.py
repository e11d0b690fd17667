"""A snapshot to S3 asks the bucket whether an object is there (a HEAD) only for the objects the
registry has a row for: new weights go straight up. Requests are counted by the proxy in front of
moto (nothing injected); the control, without the registry's answer, asks about every object. A client
records its registry as a holder of the bucket once, at its first snapshot (``storage.holders``)."""

from __future__ import annotations

import pytest
import registry_toys as toys
import torch

from registry import Registry
from registry import gc as collector


@pytest.mark.s3
@pytest.mark.parametrize("hint", [True, False], ids=["registry rows", "control: no rows asked"])
def test_only_objects_the_registry_knows_are_asked_about(fault_proxy, s3_bucket, sqlite_url, tmp_path, monkeypatch,
                                                         hint):
    if not hint:
        monkeypatch.setattr(collector, "may_be_stored", lambda event_store: lambda digest: True)
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache"))
    module = toys.spec().build()
    counts = fault_proxy.plan.counts

    counts.clear()
    reg.snapshot("pol", module)
    heads, puts = counts["HEAD"], counts["PUT"]
    assert puts >= 1
    assert heads == (0 if hint else puts), counts  # new objects: no HEAD unless the control asks anyway
    # the registry recorded itself once (a HEAD, a PUT), listed the bucket's holders and gc leases (a GET each)
    assert (counts["holders HEAD"], counts["holders PUT"], counts["holders GET"], counts["collecting GET"]) == \
        (1, 1, 1, 1), counts

    counts.clear()
    reg.snapshot("pol", module)  # the same weights: every object known, asked about, none uploaded
    assert counts["HEAD"] == puts and counts["PUT"] == 0, counts
    assert not any(k.startswith(("holders", "collecting")) for k in counts), counts  # once per client

    toys.train_step(module, 1)
    counts.clear()
    reg.snapshot("pol", module)
    assert counts["PUT"] >= 1 and (counts["HEAD"] == 0 or not hint), counts
    assert toys.states_equal(reg.load("pol"), module)
    reg.close()


@pytest.mark.s3
def test_an_object_removed_behind_the_registry_s_back_is_uploaded_again(fault_proxy, s3_bucket, sqlite_url, tmp_path):
    url = s3_bucket + "/blobs"
    reg = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cache"))
    module = toys.spec().build()
    reg.snapshot("pol", module)
    fs = reg.store.fs
    stored = [p for p in fs.find(url.removeprefix("s3://") + "/objects")]
    assert stored
    fs.rm(stored)  # the rows stay: the registry still believes they are there
    counts = fault_proxy.plan.counts
    counts.clear()
    reg.snapshot("pol", module)  # known objects are asked about, found missing and written again
    assert counts["HEAD"] == len(stored) and counts["PUT"] == len(stored), counts
    cold = Registry(sqlite_url, url, cache_dir=str(tmp_path / "cold"))
    assert toys.states_equal(cold.load("pol"), module) and cold.verify()["ok"]
    reg.close()
    cold.close()


@pytest.mark.s3
@pytest.mark.parametrize("setting", ["default", "signing chosen", "signing in the AWS config file",
                                     "signing in the profile option's section", "checksums only where required"])
def test_an_upload_over_http_carries_a_checksum_rather_than_a_sha256(setting, fault_proxy, s3_bucket, sqlite_url,
                                                                     tmp_path, monkeypatch):
    """Over plain HTTP botocore would hash every uploaded byte with SHA-256 to sign the request; an object's
    PUT carries a CRC32 that S3 checks instead, unless the caller chose signing (storage options or the AWS
    config file), or checksums only where required (no checksum would go with the body). The objects
    arrive whole either way."""
    from storage import Store

    if setting == "checksums only where required":
        monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    if setting == "signing in the AWS config file":
        (tmp_path / "aws-config").write_text("[default]\ns3 =\n    payload_signing_enabled = true\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    options = {"config_kwargs": {"s3": {"payload_signing_enabled": True}}} if setting == "signing chosen" else {}
    if setting == "signing in the profile option's section":
        (tmp_path / "aws-config").write_text("[profile signer]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
                                               "s3 =\n    payload_signing_enabled = true\n")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
        options = {"profile": "signer"}
    store = Store(s3_bucket + "/blobs", cache_dir=str(tmp_path / "cache"), **options)
    module = toys.spec().build()
    manifest = store.put(dict(module.state_dict()))
    puts = fault_proxy.plan.puts
    assert puts, fault_proxy.plan.counts
    signed = [h["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD" for h in puts]
    assert signed == [setting != "default"] * len(puts), puts
    if setting != "checksums only where required":
        assert all("x-amz-checksum-crc32" in h for h in puts), puts
    cold = Store(s3_bucket + "/blobs", cache_dir=str(tmp_path / "cold"))
    assert all(torch.equal(t, module.state_dict()[name]) for name, t in cold.get(manifest).items())


def test_an_https_endpoint_keeps_botocore_s_own_signing():
    """Over HTTPS (AWS itself, or an endpoint named https://) botocore already sends a checksum rather than
    a SHA-256 of an upload's body, and signs the rest: nothing is changed there."""
    from storage.filesystems import s3_options

    for options in ({"endpoint_url": "https://minio.example:9000"}, {"client_kwargs": {"endpoint_url": "https://x"}}):
        assert "config_kwargs" not in s3_options(dict(options))
    assert s3_options({"endpoint_url": "http://minio.internal:9000"})["config_kwargs"] == {
        "s3": {"payload_signing_enabled": False}}
