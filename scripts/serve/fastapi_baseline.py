#!/usr/bin/env python3
"""The Python baseline for benchmarking `fool serve`: what a careful user would write.

FastAPI + plain uvicorn (one worker, asyncio loop, h11), the same TorchScript model loaded with
torch.jit.load, eval mode and torch.inference_mode, torchvision's ImageNet preprocessing
re-implemented with Pillow + numpy (no torchvision), and dynamic batching like the Rust server's:
a bounded asyncio.Queue (full -> 503 + Retry-After), one worker coroutine that takes the first
request, then waits up to --max-delay-ms for up to --max-batch images, runs the batch on a
single-thread executor (torch releases the GIL) and resolves the requests' futures.

Endpoints (a subset of docs/serve-api.md, same JSON shapes):
  GET  /v2/health/live, /v2/health/ready
  POST /predictions/{name}        raw encoded image -> {model, index, label, confidence, top_k}
  POST /v2/models/{name}/infer    JSON FP32 [N,3,S,S] (or [3,S,S]) normalized input
                                  -> outputs probabilities FP32 [N,C], label INT64 [N] (JSON only)

  .venv/bin/python scripts/serve/fastapi_baseline.py --model assets/model.pt --port 8081
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import json
import sys
from contextlib import asynccontextmanager

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

TOP_K = 5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="FastAPI baseline image-classification server")
    p.add_argument("--model", default="assets/model.pt", help="TorchScript classifier")
    p.add_argument("--labels", default="assets/imagenet_labels.json",
                   help='JSON {"0": "tench", ...} or a list; missing file -> indices as labels')
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--name", default="model", help="model name in the URLs")
    p.add_argument("--threads", type=int, default=2,
                   help="torch intra-op and inter-op threads (default 2)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the worker forms")
    p.add_argument("--max-delay-ms", type=float, default=2.0,
                   help="how long the worker waits to fill a batch after its first request")
    p.add_argument("--queue", type=int, default=256, help="bounded queue length (full -> 503)")
    p.add_argument("--size", type=int, default=224, help="model input size S (center crop)")
    p.add_argument("--resize", type=int, default=256, help="shorter side before the crop")
    p.add_argument("--resize-always", action="store_true",
                   help="also resize/crop images that are already SIZE x SIZE (fool's flag of "
                        "the same name; by default such an image is used as it is, as fool does)")
    p.add_argument("--plain-layout", action="store_true",
                   help="feed the model contiguous NCHW input; by default the input is channels-last "
                        "with frozen parameters, as fool feeds its models (equal footing)")
    p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406])
    p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225])
    return p.parse_args(argv)


ARGS = parse_args()
torch.set_num_threads(ARGS.threads)
torch.set_num_interop_threads(ARGS.threads)

MODEL = torch.jit.load(ARGS.model, map_location="cpu")
MODEL.eval()
if not ARGS.plain_layout:
    # What fool does to every model it loads (src/model.rs): parameters frozen, input in
    # channels-last memory (oneDNN's fast layout). Same footing for the comparison.
    for p_ in MODEL.parameters():
        p_.requires_grad_(False)
MEAN = np.asarray(ARGS.mean, dtype=np.float32).reshape(1, 1, 3)
STD = np.asarray(ARGS.std, dtype=np.float32).reshape(1, 1, 3)


def _run_model(x: np.ndarray):
    """(N,3,S,S) float32 -> (probabilities, logits) as numpy. Runs on the model thread."""
    with torch.inference_mode():
        t = torch.from_numpy(x)
        if not ARGS.plain_layout:
            t = t.contiguous(memory_format=torch.channels_last)
        logits = MODEL(t)
        probs = torch.softmax(logits, dim=1)
    return probs.numpy(), logits.numpy()


# warm-up (also tells the number of classes)
NUM_CLASSES = _run_model(np.zeros((1, 3, ARGS.size, ARGS.size), dtype=np.float32))[0].shape[1]


def _load_labels(path, n):
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        raw = {}
    if isinstance(raw, list):
        names = {i: str(v) for i, v in enumerate(raw)}
    else:
        names = {int(k): str(v) for k, v in raw.items()}
    return [names.get(i, str(i)) for i in range(n)]


LABELS = _load_labels(ARGS.labels, NUM_CLASSES)


# --- preprocessing: torchvision's Resize(resize) + CenterCrop(size) + ToTensor + Normalize ---
def preprocess(data: bytes) -> np.ndarray:
    """Encoded image -> normalized float32 (3,S,S), as torchvision's ImageNet transform.

    Like fool's preprocessing, an image that is already SxS is used as it is (no resize, no
    crop) unless --resize-always."""
    img = Image.open(io.BytesIO(data))
    img = img.convert("RGB")
    w, h = img.size
    if not ARGS.resize_always and w == ARGS.size and h == ARGS.size:
        return _normalize(img)
    # torchvision.transforms.Resize(int): shorter side -> resize, longer int(resize*long/short)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = ARGS.resize, int(ARGS.resize * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    # torchvision.transforms.CenterCrop(size) (images smaller than the crop are zero-padded)
    s = ARGS.size
    if new_w < s or new_h < s:
        padded = Image.new("RGB", (max(new_w, s), max(new_h, s)))
        pl, pt = (max(s - new_w, 0)) // 2, (max(s - new_h, 0)) // 2
        padded.paste(img, (pl, pt))
        img = padded
        new_w, new_h = img.size
    top = int(round((new_h - s) / 2.0))
    left = int(round((new_w - s) / 2.0))
    img = img.crop((left, top, left + s, top + s))
    return _normalize(img)


def _normalize(img: Image.Image) -> np.ndarray:
    """SxS RGB Pillow image -> (3,S,S) float32: ToTensor() then Normalize(mean, std)."""
    x = np.asarray(img, dtype=np.float32) / 255.0  # HWC
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# --- dynamic batching ------------------------------------------------------------------------
class Item:
    __slots__ = ("x", "future")

    def __init__(self, x: np.ndarray, future: asyncio.Future):
        self.x = x  # (n,3,S,S)
        self.future = future


QUEUE: asyncio.Queue | None = None
MODEL_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")


async def batch_worker():
    loop = asyncio.get_running_loop()
    max_delay = max(ARGS.max_delay_ms, 0.0) / 1000.0
    pending: Item | None = None
    while True:
        first = pending if pending is not None else await QUEUE.get()
        pending = None
        batch = [first]
        rows = first.x.shape[0]
        deadline = loop.time() + max_delay
        while rows < ARGS.max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    item = QUEUE.get_nowait()
                else:
                    item = await asyncio.wait_for(QUEUE.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if rows + item.x.shape[0] > ARGS.max_batch:
                pending = item  # starts the next batch
                break
            batch.append(item)
            rows += item.x.shape[0]
        live = [it for it in batch if not it.future.done()]  # drop cancelled (client gone)
        if not live:
            continue
        x = live[0].x if len(live) == 1 else np.concatenate([it.x for it in live])
        try:
            probs, logits = await loop.run_in_executor(MODEL_EXECUTOR, _run_model, x)
        except Exception as e:  # model failure -> 500 for every request of the batch
            for it in live:
                if not it.future.done():
                    it.future.set_exception(e)
            continue
        start = 0
        for it in live:
            n = it.x.shape[0]
            if not it.future.done():
                it.future.set_result((probs[start:start + n], logits[start:start + n]))
            start += n


@asynccontextmanager
async def lifespan(app):
    global QUEUE
    QUEUE = asyncio.Queue(maxsize=ARGS.queue)
    task = asyncio.create_task(batch_worker())
    yield
    task.cancel()


app = FastAPI(lifespan=lifespan)


def error(status: int, msg: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status, headers=headers)


async def classify(x: np.ndarray):
    """Queue x (n,3,S,S); returns (probs, logits) or a JSONResponse error."""
    fut = asyncio.get_running_loop().create_future()
    try:
        QUEUE.put_nowait(Item(x, fut))
    except asyncio.QueueFull:
        return error(503, "queue full", headers={"Retry-After": "1"})
    try:
        return await fut
    except Exception as e:
        return error(500, f"model failure: {e}")


def top_k(row: np.ndarray, k: int = TOP_K):
    idx = np.argsort(-row, kind="stable")[:k]
    return [{"index": int(i), "label": LABELS[i], "prob": float(row[i])} for i in idx]


@app.get("/v2/health/live")
async def live():
    return {"live": True}


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@app.post("/predictions/{name}")
async def predictions(name: str, request: Request):
    if name != ARGS.name:
        return error(404, f"model: unknown model '{name}'")
    body = await request.body()
    if not body:
        return error(400, "body: empty; send one encoded image")
    try:
        x = await asyncio.get_running_loop().run_in_executor(None, preprocess, body)
    except Exception as e:
        return error(400, f"body: cannot decode the image: {e}")
    out = await classify(x[None])
    if isinstance(out, JSONResponse):
        return out
    probs = out[0][0]
    i = int(np.argmax(probs))
    answer = {"model": name, "index": i, "label": LABELS[i], "confidence": float(probs[i]),
              "top_k": top_k(probs)}
    rid = request.headers.get("x-request-id")
    return JSONResponse(answer, headers={"X-Request-Id": rid} if rid else None)


def _parse_infer(body: bytes):
    """JSON infer request -> (request dict, (N,3,S,S) float32) or raises ValueError."""
    try:
        req = json.loads(body)
    except Exception as e:
        raise ValueError(f"body: invalid JSON: {e}")
    inputs = req.get("inputs") if isinstance(req, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise ValueError("inputs: exactly one input expected")
    inp = inputs[0]
    if inp.get("datatype") != "FP32":
        raise ValueError(f"inputs[0].datatype: only FP32 is supported, got {inp.get('datatype')}")
    shape = inp.get("shape")
    s = ARGS.size
    if not isinstance(shape, list) or list(shape[-3:]) != [3, s, s] or len(shape) not in (3, 4):
        raise ValueError(f"inputs[0].shape: expected [N,3,{s},{s}] or [3,{s},{s}], got {shape}")
    if "data" not in inp:
        raise ValueError("inputs[0].data: missing (binary tensor data is not supported here)")
    x = np.asarray(inp["data"], dtype=np.float32)
    if x.size != int(np.prod(shape)):
        raise ValueError(f"inputs[0].data: {x.size} values for shape {shape}")
    return req, x.reshape([-1, 3, s, s])


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    if name != ARGS.name:
        return error(404, f"model: unknown model '{name}'")
    body = await request.body()
    try:
        req, x = await asyncio.get_running_loop().run_in_executor(None, _parse_infer, body)
    except ValueError as e:
        return error(400, str(e))
    if x.shape[0] == 0:
        return error(400, "inputs[0].shape: empty batch")
    out = await classify(x)
    if isinstance(out, JSONResponse):
        return out
    probs, logits = out
    n, c = probs.shape
    labels = probs.argmax(axis=1)
    wanted = [o.get("name") for o in req.get("outputs") or []] or ["probabilities", "label"]
    outputs = []
    for o in wanted:
        if o == "probabilities":
            outputs.append({"name": o, "datatype": "FP32", "shape": [n, c],
                            "data": probs.reshape(-1).tolist()})
        elif o == "label":
            outputs.append({"name": o, "datatype": "INT64", "shape": [n],
                            "data": labels.tolist()})
        elif o == "logits":
            outputs.append({"name": o, "datatype": "FP32", "shape": [n, c],
                            "data": logits.reshape(-1).tolist()})
        else:
            return error(400, f"outputs: unknown output '{o}'")
    params = {"top_k": json.dumps([top_k(row) for row in probs])}
    if n == 1:
        params["label"] = LABELS[int(labels[0])]
        params["confidence"] = float(probs[0, labels[0]])
    answer = {"model_name": name, "model_version": "1", "outputs": outputs, "parameters": params}
    if "id" in req:
        answer["id"] = req["id"]
    rid = request.headers.get("x-request-id")
    # not a dict: FastAPI's jsonable_encoder would walk every float
    return JSONResponse(answer, headers={"X-Request-Id": rid} if rid else None)


if __name__ == "__main__":
    print(f"[fastapi_baseline] {ARGS.model}: {NUM_CLASSES} classes, threads {ARGS.threads}, "
          f"max-batch {ARGS.max_batch}, max-delay {ARGS.max_delay_ms} ms, queue {ARGS.queue}; "
          f"http://{ARGS.host}:{ARGS.port}", file=sys.stderr)
    uvicorn.run(app, host=ARGS.host, port=ARGS.port, workers=1, log_level="warning",
                access_log=False)
