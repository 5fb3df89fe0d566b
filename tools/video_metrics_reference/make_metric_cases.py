"""Golden cases for the video metrics (src/visionports/metrics) from the REFERENCE implementations (reference runs only).

Small hand-built and seeded videos (3-20 frames of 8x12 px, one case of 270x300 px for the AP area ranges) are
scored by the reference evaluators, imported at run time from a ``git archive`` of their repositories into a
temporary folder (nothing of them is copied into this project):

* YouTube-VIS AP: ``YTVOS`` / ``YTVOSeval`` from tue-mps/videomt @ 39411e940499f34f54d7c9f031a34111bab190d6
  (``videomt/data_video/datasets/ytvis_api/``, a copy of youtubevos/cocoapi), run as VidEoMT's evaluator runs
  it (``maxDets = [1, 10, 100]``, ``bbox`` removed from results).
* VPQ: ``vpq_compute_single_core`` / ``PQStat`` of ``ClipPanoFCN/eval_vpq_vspw.py`` and STQ: ``STQuality`` of
  ``ClipPanoFCN/segmentation_and_tracking_quality.py`` from VIPSeg-Dataset/VIPSeg-Dataset
  @ 92e1459db13d80c8e96e167c7c2e8ef2c9ee9a2e; also deeplab2's ``evaluation/numpy/segmentation_and_tracking_quality.py``
  from google-research/deeplab2 @ 64bc1c1a6505b6cd1779b65f9127180840b8a4fa (the canonical STQ; under numpy 2 it
  accumulates pixel counts in float32, so its figures are stored separately and compared loosely).
  The videos are written as VIPSeg panoptic PNGs (id = R + 256 G + 256^2 B) plus ``segments_info`` JSON, as
  the reference reads them; STQ gets ``(semantic << 16) + instance`` maps, void = 255, offset 2**24.
* VSPW: ``Evaluator`` (mIoU) and ``get_common`` (VC) of ``utils.py`` from sssdddwww2/CVPR2021_VSPW_Implement
  @ 3ead088804fe34d3b826b656e026d50562a3f7bd (``VC_perclip.py`` runs on import; its ``get_common`` is the same
  function), with ``VC_perclip.py``'s loop (videos with ``T <= n`` skipped, NaN-mean over all windows).

Run it in an environment holding numpy, pycocotools, Pillow, matplotlib and torch (VSPW's utils.py imports it),
e.g. the original VidEoMT environment, never the project's .venv:

    <original-venv>/bin/python tools/video_metrics_reference/make_metric_cases.py \
        --videomt <tue-mps/videomt git dir> \
        --vipseg <VIPSeg-Dataset/VIPSeg-Dataset git dir> \
        --deeplab2 <google-research/deeplab2 git dir> \
        --vspw <sssdddwww2/CVPR2021_VSPW_Implement git dir> \
        --out tests/fixtures/video_metrics

(each option is a bare git dir or a checkout; the commits above are archived from it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

COMMITS = {
    "videomt": "39411e940499f34f54d7c9f031a34111bab190d6",
    "vipseg": "92e1459db13d80c8e96e167c7c2e8ef2c9ee9a2e",
    "deeplab2": "64bc1c1a6505b6cd1779b65f9127180840b8a4fa",
    "vspw": "3ead088804fe34d3b826b656e026d50562a3f7bd",
}
FILES = {
    "videomt": [
        "videomt/data_video/datasets/ytvis_api/ytvos.py",
        "videomt/data_video/datasets/ytvis_api/ytvoseval.py",
    ],
    "vipseg": ["ClipPanoFCN/eval_vpq_vspw.py", "ClipPanoFCN/segmentation_and_tracking_quality.py"],
    "deeplab2": ["evaluation/numpy/segmentation_and_tracking_quality.py"],
    "vspw": ["utils.py"],
}
H, W = 8, 12


# ----------------------------------------------------------------------------------------------- references
def archive(git_dir: str, name: str, root: Path) -> Path:
    """``git archive`` the reference files of ``name`` at its pinned commit into ``root/name``."""
    dest = root / name
    dest.mkdir(parents=True)
    flag = "--git-dir" if not (Path(git_dir) / ".git").exists() else "-C"
    data = subprocess.run(
        ["git", flag, git_dir, "archive", COMMITS[name], *FILES[name]], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=data, check=True)
    return dest


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------- drawing
def rect(t_frames: int, boxes: dict[int, tuple[int, int, int, int]], h: int = H, w: int = W) -> np.ndarray:
    """bool ``[T, h, w]`` with the box ``(y0, x0, y1, x1)`` in each listed frame."""
    out = np.zeros((t_frames, h, w), bool)
    for t, (y0, x0, y1, x1) in boxes.items():
        out[t, y0:y1, x0:x1] = True
    return out


def moving(
    t_frames: int,
    frames: range,
    y0: int,
    x0: int,
    hh: int,
    ww: int,
    dy: int = 0,
    dx: int = 1,
    h: int = H,
    w: int = W,
) -> np.ndarray:
    return rect(
        t_frames,
        {t: (y0 + dy * i, x0 + dx * i, y0 + dy * i + hh, x0 + dx * i + ww) for i, t in enumerate(frames)},
        h,
        w,
    )


# ----------------------------------------------------------------------------------------------- YouTube-VIS
def rle(mask: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": r["size"], "counts": r["counts"].decode()}


def track_segs(masks: np.ndarray, keep_empty: bool = False) -> list:
    return [rle(m) if (m.any() or keep_empty) else None for m in masks]


def polygon_of(mask: np.ndarray) -> list | None:
    """A box mask as a one-polygon list (corners at pixel edges, which pycocotools rasterises to the box)."""
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return [[float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]]


def gt_ann(
    ann_id: int, vid: int, cat: int, masks: np.ndarray, crowd: int = 0, polygons: bool = False
) -> dict:
    segs = [polygon_of(m) for m in masks] if polygons else track_segs(masks)
    areas = [int(m.sum()) if m.any() else None for m in masks]
    if polygons:  # areas as pycocotools rasterises the polygons
        areas = [
            None
            if s is None
            else int(mask_util.area(mask_util.merge(mask_util.frPyObjects(s, *masks.shape[1:]))))
            for s in segs
        ]
    return {
        "id": ann_id,
        "video_id": vid,
        "category_id": cat,
        "segmentations": segs,
        "areas": areas,
        "bboxes": [None] * len(masks),
        "iscrowd": crowd,
        "width": masks.shape[2],
        "height": masks.shape[1],
        "length": 1,
    }


def video_entry(vid: int, t_frames: int, h: int = H, w: int = W) -> dict:
    return {
        "id": vid,
        "file_names": [f"v{vid}/{t:05d}.jpg" for t in range(t_frames)],
        "height": h,
        "width": w,
        "length": t_frames,
    }


def pred(vid: int, cat: int, score: float, masks: np.ndarray, keep_empty: bool = False) -> dict:
    return {
        "video_id": vid,
        "category_id": cat,
        "score": score,
        "segmentations": track_segs(masks, keep_empty),
    }


def ytvis_hand() -> tuple[dict, list]:
    cats = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3, 7)]
    a1 = moving(5, range(0, 5), 1, 0, 3, 4)  # a car moving right, all frames
    a2 = moving(5, range(2, 5), 4, 6, 4, 3)  # appears at frame 2
    a3 = moving(5, range(0, 2), 0, 8, 2, 3)  # disappears after frame 1
    b1 = moving(3, range(0, 3), 2, 2, 5, 5, dx=0)
    b2 = moving(3, range(0, 3), 0, 9, 8, 3, dx=0)  # a crowd region of category 2
    c1 = moving(8, range(0, 8), 1, 1, 4, 4, dy=0, dx=1)
    c2 = moving(8, range(3, 6), 5, 0, 3, 6, dx=1)
    gt = {
        "videos": [video_entry(1, 5), video_entry(2, 3), video_entry(3, 8)],
        "categories": cats,
        "annotations": [
            gt_ann(1, 1, 1, a1),
            gt_ann(2, 1, 1, a2, polygons=True),
            gt_ann(3, 1, 2, a3),
            gt_ann(4, 2, 2, b1),
            gt_ann(5, 2, 2, b2, crowd=1),
            gt_ann(6, 3, 3, c1),
            gt_ann(7, 3, 1, c2),
        ],
    }
    half = a1.copy()
    half[3:] = False  # right in frames 0-2, absent in 3-4
    shifted = np.roll(c1, 1, axis=2)
    preds = [
        pred(1, 1, 0.9, a1),  # perfect
        pred(1, 1, 0.8, half),  # half of the frames: IoU 3/5 against a1
        pred(1, 1, 0.7, a2, keep_empty=True),  # perfect, with empty RLEs where absent
        pred(1, 3, 0.95, a3),  # wrong class
        pred(1, 2, 0.3, a3 | a2),  # a3 plus extra
        pred(2, 2, 0.6, b1),
        pred(2, 2, 0.65, b2),  # on the crowd
        pred(2, 2, 0.6, moving(3, range(0, 3), 3, 3, 3, 3, dx=0)),  # score tie, inside b1
        pred(3, 3, 0.5, shifted),
        pred(3, 1, 0.4, c2),
        pred(3, 7, 0.99, c1),  # a category without ground truth
    ]
    preds[2]["segmentations"][0] = {"size": [H, W], "counts": rle(np.zeros((H, W), bool))["counts"].encode()}
    return gt, preds


def random_masks(
    rng: np.random.Generator, t_frames: int, h: int = H, w: int = W, big: bool = False
) -> np.ndarray:
    """A random box track: random start/end frame, box size (up to about half the frame, or all) and drift."""
    start = int(rng.integers(0, t_frames))
    end = int(rng.integers(start + 1, t_frames + 1))
    hh, ww = (
        (int(rng.integers(h // 4, h + 1)), int(rng.integers(w // 4, w + 1)))
        if big
        else (int(rng.integers(1, h // 2 + 2)), int(rng.integers(1, w // 2 + 2)))
    )
    y0, x0 = int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - ww + 1))
    dy, dx = int(rng.integers(-1, 2)), int(rng.integers(-1, 2))
    out = np.zeros((t_frames, h, w), bool)
    for i, t in enumerate(range(start, end)):
        yy, xx = np.clip(y0 + dy * i, 0, h - hh), np.clip(x0 + dx * i, 0, w - ww)
        out[t, yy : yy + hh, xx : xx + ww] = True
    return out


def perturb(rng: np.random.Generator, masks: np.ndarray, p: float, flip: bool = True) -> np.ndarray:
    """Flip pixels with probability ``p`` (or shift by one pixel, for large frames) and drop frames."""
    out = masks ^ (rng.random(masks.shape) < p) if flip else np.roll(masks, int(p > 0) * 9, axis=2)
    out[rng.random(masks.shape[0]) < p] = False
    return out


def ytvis_random(seed: int, n_videos: int, h: int = H, w: int = W, n_preds: int = 12) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]
    gt = {"videos": [], "categories": cats, "annotations": []}
    preds, ann_id = [], 1
    for vid in range(1, n_videos + 1):
        t_frames = int(rng.integers(3, 9))
        gt["videos"].append(video_entry(vid, t_frames, h, w))
        tracks = []
        for _ in range(int(rng.integers(1, 5))):
            masks, cat = random_masks(rng, t_frames, h, w, big=h > H), int(rng.integers(1, 4))
            crowd = int(rng.random() < 0.1)
            gt["annotations"].append(gt_ann(ann_id, vid, cat, masks, crowd=crowd))
            tracks.append((cat, masks))
            ann_id += 1
        for _ in range(n_preds):
            if rng.random() < 0.6:
                cat, masks = tracks[int(rng.integers(0, len(tracks)))]
                masks = perturb(rng, masks, float(rng.choice([0.0, 0.05, 0.2])), flip=h == H)
                cat = cat if rng.random() < 0.8 else int(rng.integers(1, 4))
            else:
                cat, masks = int(rng.integers(1, 4)), random_masks(rng, t_frames, h, w, big=h > H)
            preds.append(pred(vid, cat, float(np.round(rng.random(), 2)), masks))
    return gt, preds


def run_ytvis(mods: dict, gt: dict, preds: list) -> list[float]:
    ytvos, ytvoseval = mods["ytvos"], mods["ytvoseval"]
    with contextlib.redirect_stdout(io.StringIO()):
        api = ytvos.YTVOS()
        api.dataset = copy.deepcopy(gt)
        api.createIndex()
        results = copy.deepcopy(preds)
        for r in results:
            for s in r["segmentations"]:
                if s is not None and isinstance(s["counts"], str):
                    s["counts"] = s["counts"].encode()
        dt = api.loadRes(results)
        ev = ytvoseval.YTVOSeval(api, dt)
        ev.params.maxDets = [1, 10, 100]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(x) for x in ev.stats]


def json_safe(preds: list) -> list:
    out = copy.deepcopy(preds)
    for r in out:
        for i, s in enumerate(r["segmentations"]):
            if s is not None and isinstance(s["counts"], bytes):
                r["segmentations"][i] = {
                    "size": s["size"],
                    "counts": s["counts"].decode(),
                    "counts_as_bytes": True,
                }
    return out


def write_ytvis(out: Path, name: str, mods: dict, gt: dict, preds: list) -> None:
    stats = run_ytvis(mods, gt, preds)
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    doc = {
        "ground_truth": gt,
        "predictions": json_safe(preds),
        "reference": dict(zip(keys, stats, strict=True)),
    }
    (out / f"{name}.json").write_text(json.dumps(doc))
    print(name, {k: round(v, 4) for k, v in doc["reference"].items()})


# ----------------------------------------------------------------------------------------------- panoptic
THINGS, N_CLASSES = (0, 1), 5  # classes 0, 1 things; 2, 3, 4 stuff


def stuff_background(t_frames: int) -> np.ndarray:
    sem = np.full((t_frames, H, W), 2)
    sem[:, :3] = 3  # "sky"
    sem[:, 6:, 8:] = 4
    return sem


def vps_hand() -> list[dict]:
    """Two videos with id switches, fragments, a crowd region, void pixels and a wrong class."""
    videos = []
    # video 1: 6 frames, car (track 1) moving right, person (track 2) appearing at frame 3, crowd of class 1
    t = 6
    gs = stuff_background(t)
    gi = np.zeros_like(gs)
    car, person = moving(t, range(0, 6), 3, 0, 3, 4), moving(t, range(3, 6), 1, 8, 4, 2, dx=0)
    gs[car], gi[car] = 0, 1
    gs[person], gi[person] = 1, 2
    crowd = rect(t, {k: (0, 0, 2, 2) for k in range(t)})
    gs[crowd], gi[crowd] = 1, 0
    gs[:, 7, 11] = 255  # void
    ps, pi = gs.copy(), gi.copy()
    pi[3:][car[3:]] = 5  # id switch of the car at frame 3
    ps[person], pi[person] = 0, 7  # person predicted as class 0 (wrong class)
    ps[:, 0, 0:2], pi[:, 0, 0:2] = 1, 9  # a prediction on the crowd region
    ps[:, 7, 10] = 255  # predicted void
    ps[:, 3:, 9:] = 3  # stuff confusion
    videos.append({"gt": (gs, gi), "pred": (ps, pi)})
    # video 2: 9 frames, two cars; the prediction fragments track 1 into 3 ids and merges track 2 late
    t = 9
    gs = stuff_background(t)
    gi = np.zeros_like(gs)
    c1, c2 = moving(t, range(0, 9), 3, 0, 2, 3, dx=1), moving(t, range(2, 7), 6, 0, 2, 2, dx=1)
    gs[c1], gi[c1] = 0, 4
    gs[c2], gi[c2] = 0, 8
    gs[:, 0, :] = 255
    ps, pi = gs.copy(), gi.copy()
    for k in range(t):
        pi[k][c1[k]] = 11 + k // 3
    pi[5:][c2[5:]] = 11 + 5 // 3
    ps[:, 0, :6] = 4  # predictions on void
    videos.append({"gt": (gs, gi), "pred": (ps, pi)})
    return videos


def vps_random(seed: int, lengths: tuple[int, ...]) -> list[dict]:
    rng = np.random.default_rng(seed)
    videos = []
    for t in lengths:
        gs = stuff_background(t)
        if rng.random() < 0.5:
            gs[:, :, :2] = 4
        gi = np.zeros_like(gs)
        for track in range(1, int(rng.integers(2, 6))):
            m = random_masks(rng, t)
            cls = int(rng.integers(0, 2))
            gs[m], gi[m] = cls, track if rng.random() > 0.1 else 0
        void = rng.random(gs.shape) < 0.03
        gs[void], gi[void] = 255, 0
        ps, pi = gs.copy(), gi.copy()
        noise = rng.random(gs.shape) < 0.08
        ps[noise] = rng.integers(0, N_CLASSES, noise.sum())
        pi[noise] = rng.integers(0, 4, noise.sum())
        for _ in range(int(rng.integers(0, 3))):
            k = int(rng.integers(0, t))
            ids = np.unique(pi[k][pi[k] > 0])
            if len(ids):
                pi[k:][pi[k:] == ids[0]] = 20 + int(rng.integers(0, 5))  # id switch from frame k
        pi[~np.isin(ps, THINGS)] = 0
        gi[~np.isin(gs, THINGS)] = 0
        videos.append({"gt": (gs, gi), "pred": (ps, pi)})
    return videos


def pan_png(sem: np.ndarray, ins: np.ndarray, crowd_gt: bool) -> tuple[list[np.ndarray], list[dict], dict]:
    """VIPSeg-style panoptic frames: RGB id images and per-frame segments_info of a [T, H, W] video."""
    keys = np.where(sem == 255, -1, sem.astype(np.int64) * 1000 + np.where(np.isin(sem, THINGS), ins, 0))
    ids = {int(k): i + 1 for i, k in enumerate(np.unique(keys[keys >= 0]))}
    frames, infos = [], []
    for k in range(sem.shape[0]):
        pan = np.zeros(sem.shape[1:], np.uint32)
        segs = []
        for key, seg_id in ids.items():
            m = keys[k] == key
            if not m.any():
                continue
            pan[m] = seg_id
            cls, inst = key // 1000, key % 1000
            segs.append(
                {
                    "id": seg_id,
                    "category_id": cls,
                    "area": int(m.sum()),
                    "iscrowd": int(crowd_gt and cls in THINGS and inst == 0),
                }
            )
        rgb = np.stack([pan % 256, pan // 256 % 256, pan // 65536], -1).astype(np.uint8)
        frames.append(rgb)
        infos.append({"segments_info": segs})
    return frames, infos, ids


def run_vpq(mods: dict, videos: list[dict], tmp: Path, window_sizes: tuple[int, ...]) -> dict:
    vpq = mods["eval_vpq_vspw"]
    categories = {c: {"id": c, "isthing": int(c in THINGS)} for c in range(N_CLASSES)}
    sets = []
    for v_index, video in enumerate(videos):
        gt_frames, gt_infos, _ = pan_png(*video["gt"], crowd_gt=True)
        pr_frames, pr_infos, _ = pan_png(*video["pred"], crowd_gt=False)
        rows = []
        for k in range(len(gt_frames)):
            gp, pp = tmp / f"gt_{v_index}_{k}.png", tmp / f"pr_{v_index}_{k}.png"
            Image.fromarray(gt_frames[k]).save(gp)
            Image.fromarray(pr_frames[k]).save(pp)
            rows.append((gt_infos[k], pr_infos[k], str(gp), str(pp), {"file_name": gp.name}))
        sets.append(rows)
    out = {}
    for n in window_sizes:
        stat = vpq.PQStat()
        for rows in sets:
            stat += vpq.vpq_compute_single_core(categories, n, copy.deepcopy(rows))
        res = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            try:
                res[name], per_class = stat.pq_average(categories, isthing=isthing)
            except ZeroDivisionError:
                res[name], per_class = {"pq": None}, {}
            if name == "All":
                out[f"per_class@{n}"] = {
                    str(c): v for c, v in per_class.items() if v["tp"] + v["fp"] + v["fn"]
                }
        out[f"VPQ@{n}"], out[f"VPQ_thing@{n}"], out[f"VPQ_stuff@{n}"] = (
            res["All"]["pq"],
            res["Things"]["pq"],
            res["Stuff"]["pq"],
        )
    return out


def run_stq(module: ModuleType, videos: list[dict]) -> dict:
    metric = module.STQuality(N_CLASSES, list(THINGS), 255, 16, 2**24)
    for seq, video in enumerate(videos):
        (gs, gi), (ps, pi) = video["gt"], video["pred"]
        for k in range(gs.shape[0]):
            y_true = (gs[k].astype(np.int64) << 16) + gi[k]
            y_pred = (ps[k].astype(np.int64) << 16) + pi[k]
            metric.update_state(y_true.astype(np.int32), y_pred.astype(np.int32), seq)
    r = metric.result()
    return {
        "STQ": float(r["STQ"]),
        "AQ": float(r["AQ"]),
        "SQ": float(r["IoU"]),
        "STQ_per_sequence": [float(x) for x in r["STQ_per_seq"]],
        "AQ_per_sequence": [float(x) for x in r["AQ_per_seq"]],
        "SQ_per_sequence": [float(x) for x in r["IoU_per_seq"]],
    }


def write_vps(out: Path, name: str, mods: dict, videos: list[dict], tmp: Path) -> None:
    arrays = {}
    for i, v in enumerate(videos):
        arrays[f"gt_semantic_{i}"], arrays[f"gt_instance_{i}"] = v["gt"]
        arrays[f"pred_semantic_{i}"], arrays[f"pred_instance_{i}"] = v["pred"]
    np.savez_compressed(out / f"{name}.npz", **{k: a.astype(np.int32) for k, a in arrays.items()})
    ref = {
        "num_videos": len(videos),
        "num_classes": N_CLASSES,
        "thing_classes": list(THINGS),
        "ignore_label": 255,
        "vpq": run_vpq(mods, videos, tmp, (1, 2, 4, 6, 8)),
        "stq_vipseg": run_stq(mods["vipseg_stq"], videos),
        "stq_deeplab2_numpy2": run_stq(mods["deeplab2_stq"], videos),
    }
    (out / f"{name}.json").write_text(json.dumps(ref, indent=1))
    print(
        name,
        {k: v for k, v in ref["vpq"].items() if k.startswith("VPQ@")},
        ref["stq_vipseg"]["STQ"],
        ref["stq_deeplab2_numpy2"]["STQ"],
    )


# ----------------------------------------------------------------------------------------------- semantic
def vss_videos(seed: int, lengths: tuple[int, ...], n_classes: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    videos = []
    for t in lengths:
        gs = np.zeros((t, H, W), np.int64)
        gs[:, :4] = 1
        gs[:, 4:, 6:] = 2
        for _ in range(3):
            gs[random_masks(rng, t)] = int(rng.integers(0, n_classes))
        gs[rng.random(gs.shape) < 0.05] = 255
        ps = gs.copy()
        ps[ps == 255] = int(rng.integers(0, n_classes))
        flicker = rng.random(gs.shape) < rng.choice([0.0, 0.02, 0.1])
        ps[flicker] = rng.integers(0, n_classes, flicker.sum())
        ps[:, :, : int(rng.integers(0, 3))] = n_classes - 1  # a class the ground truth may not have
        videos.append({"gt": gs, "pred": ps})
    return videos


def run_vss(utils: ModuleType, videos: list[dict], n_classes: int, clip_nums: tuple[int, ...]) -> dict:
    ev = utils.Evaluator(n_classes)
    for v in videos:
        for k in range(v["gt"].shape[0]):
            ev.add_batch(v["gt"][k], v["pred"][k])
    out = {"mIoU": float(ev.Mean_Intersection_over_Union())}
    for n in clip_nums:
        accs = []
        for v in videos:
            if v["gt"].shape[0] <= n:
                continue
            accs.extend(utils.get_common(list(v["gt"]), list(v["pred"]), n, H, W))
        with np.errstate(invalid="ignore"):
            out[f"mVC{n}"] = float(np.nanmean(np.asarray(accs, dtype=np.float64))) if accs else None
    return out


def write_vss(out: Path, name: str, utils: ModuleType, videos: list[dict], n_classes: int) -> None:
    np.savez_compressed(
        out / f"{name}.npz",
        **{f"{k}_semantic_{i}": v[k].astype(np.int32) for i, v in enumerate(videos) for k in ("gt", "pred")},
    )
    ref = {
        "num_videos": len(videos),
        "num_classes": n_classes,
        "ignore_label": 255,
        "reference": run_vss(utils, videos, n_classes, (8, 16, 4)),
    }
    (out / f"{name}.json").write_text(json.dumps(ref, indent=1))
    print(name, ref["reference"])


# ----------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in COMMITS:
        parser.add_argument(f"--{name}", required=True, help=f"git dir or checkout holding {COMMITS[name]}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        roots = {name: archive(getattr(args, name), name, tmp / "src") for name in COMMITS}
        api = roots["videomt"] / "videomt/data_video/datasets/ytvis_api"
        mods = {
            "ytvos": load(api / "ytvos.py", "ytvos"),
            "ytvoseval": load(api / "ytvoseval.py", "ytvoseval"),
            "eval_vpq_vspw": load(roots["vipseg"] / "ClipPanoFCN/eval_vpq_vspw.py", "eval_vpq_vspw"),
            "vipseg_stq": load(
                roots["vipseg"] / "ClipPanoFCN/segmentation_and_tracking_quality.py", "vipseg_stq"
            ),
            "deeplab2_stq": load(
                roots["deeplab2"] / "evaluation/numpy/segmentation_and_tracking_quality.py", "deeplab2_stq"
            ),
        }
        vspw_utils = load(roots["vspw"] / "utils.py", "vspw_utils")
        write_ytvis(args.out, "ytvis_hand", mods, *ytvis_hand())
        write_ytvis(args.out, "ytvis_random", mods, *ytvis_random(0, 6))
        write_ytvis(args.out, "ytvis_area_ranges", mods, *ytvis_random(1, 3, h=270, w=300, n_preds=8))
        (tmp / "png").mkdir()
        write_vps(args.out, "vps_hand", mods, vps_hand(), tmp / "png")
        write_vps(args.out, "vps_random", mods, vps_random(2, (3, 10, 16, 7)), tmp / "png")
        write_vss(args.out, "vss_random", vspw_utils, vss_videos(3, (18, 20, 10, 3, 17), 6), 6)


if __name__ == "__main__":
    main()
