#!/usr/bin/env python3
"""Interop test: NVIDIA's official `tritonclient.http` client against a running `fool serve`.

  python tests/interop/triton_client.py --url 127.0.0.1:PORT --model NAME --image-npy IMG.npy \
      [--token TOKEN]

IMG.npy is a uint8 HWC image array (H, W, 3). The served model is arbitrary: its input size S and
class count C are read from the model metadata. Every check is an assert with a message; on
success one line of JSON is printed, {"label": int, "prob": float, "checks": n}, and the exit
status is 0; any failure prints a message on stderr and exits 1.

Note: tritonclient's infer() writes Inference-Header-Content-Length into the headers dict it is
given, so every call gets a fresh dict (hdr()).
"""
import argparse
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

CHECKS = 0


def check(cond, msg):
    global CHECKS
    assert cond, msg
    CHECKS += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--url", required=True, help="host:port, without a scheme")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image-npy", required=True, help="uint8 (H,W,3) image array")
    ap.add_argument("--token", help="bearer token (server started with --token-file)")
    args = ap.parse_args()

    def hdr():
        return {"Authorization": f"Bearer {args.token}"} if args.token else None

    img = np.load(args.image_npy)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, (
        f"{args.image_npy}: expected a uint8 (H,W,3) array, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]

    client = httpclient.InferenceServerClient(url=args.url, network_timeout=300.0)

    # --- health, metadata -----------------------------------------------------------------
    check(client.is_server_live(headers=hdr()), "is_server_live: not 200 on GET /v2/health/live")
    check(client.is_server_ready(headers=hdr()),
          "is_server_ready: not 200 on GET /v2/health/ready")
    check(client.is_model_ready(args.model, headers=hdr()),
          f"is_model_ready: not 200 on GET /v2/models/{args.model}/ready")
    smeta = client.get_server_metadata(headers=hdr())
    check(smeta.get("name") == "fool", f"get_server_metadata: name is {smeta.get('name')!r}, "
          f"expected 'fool' (metadata {smeta})")

    mmeta = client.get_model_metadata(args.model, headers=hdr())
    check(mmeta.get("name") == args.model,
          f"get_model_metadata: name {mmeta.get('name')!r} != {args.model!r}")
    inputs = mmeta.get("inputs") or []
    fp32 = [i for i in inputs if i.get("datatype") == "FP32"]
    check(fp32, f"get_model_metadata: no FP32 input in {inputs}")
    in_shape = [int(d) for d in fp32[0].get("shape", [])]
    check(len(in_shape) == 4 and in_shape[0] == -1 and in_shape[1] == 3
          and in_shape[2] == in_shape[3] and in_shape[2] > 0,
          f"get_model_metadata: FP32 input shape {fp32[0].get('shape')} is not [-1,3,S,S]")
    size = in_shape[2]
    outs = {o.get("name"): o for o in mmeta.get("outputs") or []}
    check("probabilities" in outs and "label" in outs,
          f"get_model_metadata: outputs {sorted(outs)} lack 'probabilities' or 'label'")
    p_shape = [int(d) for d in outs["probabilities"].get("shape", [])]
    check(len(p_shape) == 2 and p_shape[0] == -1 and p_shape[1] > 1,
          f"get_model_metadata: probabilities shape {p_shape} is not [-1,C]")
    classes = p_shape[1]

    # --- inference ------------------------------------------------------------------------
    def infer(batch, binary, model=None, datatype="UINT8"):
        inp = httpclient.InferInput("input", list(batch.shape), datatype)
        inp.set_data_from_numpy(batch, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary),
                   httpclient.InferRequestedOutput("label", binary_data=binary)]
        return client.infer(model or args.model, [inp], outputs=outputs, headers=hdr())

    def results(res, n, what):
        probs = res.as_numpy("probabilities")
        label = res.as_numpy("label")
        check(probs is not None and label is not None,
              f"{what}: response lacks probabilities or label: {res.get_response()}")
        check(probs.dtype == np.float32 and probs.shape == (n, classes),
              f"{what}: probabilities {probs.dtype} {probs.shape}, expected float32 "
              f"({n}, {classes})")
        check(label.dtype == np.int64 and label.shape == (n,),
              f"{what}: label {label.dtype} {label.shape}, expected int64 ({n},)")
        sums = probs.astype(np.float64).sum(axis=1)
        check(np.all(np.abs(sums - 1.0) < 1e-4), f"{what}: probability rows sum to {sums}")
        check(np.array_equal(label, probs.argmax(axis=1)),
              f"{what}: label {label} != argmax(probabilities) {probs.argmax(axis=1)}")
        return probs, label

    def binary_sizes(res, expect_binary, what):
        for name, itemsize in (("probabilities", 4), ("label", 8)):
            out = res.get_output(name)
            size = (out.get("parameters") or {}).get("binary_data_size")
            if expect_binary:
                n = int(np.prod(out["shape"]))
                check(size == n * itemsize and "data" not in out,
                      f"{what}: output {name} not returned as binary data of {n * itemsize} "
                      f"bytes: {out}")
            else:
                check(size is None and "data" in out,
                      f"{what}: output {name} not returned as JSON data: "
                      f"{ {k: v for k, v in out.items() if k != 'data'} }")

    one = img[None]
    res_bin = infer(one, True)
    binary_sizes(res_bin, True, "infer UINT8 [1,H,W,3] binary")
    probs1, label1 = results(res_bin, 1, "infer UINT8 [1,H,W,3] binary")

    res_json = infer(one, False)
    binary_sizes(res_json, False, "infer UINT8 [1,H,W,3] JSON")
    probs_j, label_j = results(res_json, 1, "infer UINT8 [1,H,W,3] JSON")
    check(np.allclose(probs_j, probs1, rtol=0, atol=1e-5) and np.array_equal(label_j, label1),
          f"JSON and binary answers differ: max |dp| {np.abs(probs_j - probs1).max():.3g}, "
          f"labels {label_j} vs {label1}")

    res2 = infer(np.stack([img, img]), True)
    probs2, label2 = results(res2, 2, "infer UINT8 [2,H,W,3] binary")
    for r in range(2):
        check(np.allclose(probs2[r], probs1[0], rtol=0, atol=1e-5) and label2[r] == label1[0],
              f"batch row {r} differs from the single answer: max |dp| "
              f"{np.abs(probs2[r] - probs1[0]).max():.3g}, label {label2[r]} vs {label1[0]}")

    # --- errors ---------------------------------------------------------------------------
    try:
        infer(one, True, model="no-such-model-for-interop")
        raised = None
    except InferenceServerException as e:
        raised = e
    check(raised is not None, "infer on an unknown model did not raise InferenceServerException")

    try:
        infer(np.zeros((1, h, w, 4), dtype=np.uint8), True)
        raised = None
    except InferenceServerException as e:
        raised = e
    check(raised is not None,
          "infer with a UINT8 [1,H,W,4] input did not raise InferenceServerException")
    check("shape" in str(raised.message()).lower(),
          f"the wrong-shape error does not mention 'shape': {raised}")

    if args.token:
        # without the token: inference is refused (401), health stays open
        inp = httpclient.InferInput("input", list(one.shape), "UINT8")
        inp.set_data_from_numpy(one)
        try:
            client.infer(args.model, [inp])
            raised = None
        except InferenceServerException as e:
            raised = e
        check(raised is not None and raised.status() == "401",
              f"infer without the bearer token: expected a 401 error, got {raised}")
        check(client.is_server_ready(), "GET /v2/health/ready without the token is not 200")

    client.close()
    print(json.dumps({"label": int(label1[0]), "prob": float(probs1[0].max()),
                      "checks": CHECKS}))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"triton_client: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # connection refused, unexpected server error, ...
        print(f"triton_client: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
