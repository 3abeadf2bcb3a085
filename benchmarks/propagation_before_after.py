"""Propagation on the default path before/after batching the margin boxes and streaming the encoder.

One run, the same BraTS FLAIR volume and box as ``benchmarks/speed.py`` (``volume_100``),
``PropagationConfig(encode_batch=4)``, before and after interleaved for ``ROUNDS`` rounds:

- before: one ``Predictor.predict`` per margin box (each upsampled to the original grid) and
  prefetched planes encoded one at a time on the latency-compiled OpenVINO encoder;
- after (the code now): ``Predictor.predict_best`` (the margins in one decoder batch, only the
  winner upsampled) and ``OpenVinoModel._encode_streams`` (single-thread streams).

Prints wall and process CPU seconds (CPU time is steadier than wall time on a shared machine)
and the agreement of the masks of every slice, after vs before.

Usage: ``python benchmarks/propagation_before_after.py SLICES ROUNDS`` (e.g. ``30 2``);
``python benchmarks/propagation_before_after.py --accuracy-3d HIPPO BRATS``: Dice of the
default tri-planar 3D-box propagation before and after on the first HIPPO hippocampus and
BRATS BraTS cases (every target of ``benchmarks/propagation_3d.py``; own embeddings each).
"""
import sys, time, gc, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from speed import volume_100
from medisam.models import load_model
from medisam.models.openvino_backend import OpenVinoModel
from medisam.predict import PropagationConfig, VolumeSession, Predictor
from medisam.metrics_basic import dice


def loop_best(self, boxes):
    """Before: one predict() per box, the strictly better score kept."""
    best = None
    for i, b in enumerate(boxes):
        p = self.predict(box=b)
        if best is None or p.scores[0] > best[1].scores[0]:
            best = (i, p)
    return best


def one_at_a_time(self, x):
    """Before: a batch encoded image by image on the latency-compiled encoder."""
    r = self._encoder_run.request()
    return np.concatenate([r.infer({"image": x[i:i + 1]})[0].copy() for i in range(x.shape[0])])


def use(before: bool, new_best, new_stream) -> None:  # noqa: ANN001
    """Switch the process to the code before (True) or after (False)."""
    Predictor.predict_best = loop_best if before else new_best
    OpenVinoModel._encode_streams = one_at_a_time if before else new_stream


def accuracy_3d(n_hippo: int, n_brats: int) -> None:
    """Dice per case and target, before/after, of 3D-box propagation on the default path."""
    from propagation_3d import brats_cases, dice as dice3d, hippocampus_cases, object_volume, tight_box3d
    from medisam.predict.volume import volume_to_display

    model = load_model("litemedsam", device="cpu", threads=None)
    print("default:", model.backend, model.precision, "threads", model.threads, flush=True)
    new_best, new_stream = Predictor.predict_best, OpenVinoModel._encode_streams
    print("| case | target | Dice before | Dice after | masks identical |")
    print("| --- | --- | --- | --- | --- |")
    for case in hippocampus_cases(n_hippo) + brats_cases(n_brats):
        vol8 = np.rint(volume_to_display(case.image.array, case.image.modality)).astype(np.uint8)
        image8 = case.image.with_array(vol8)
        boxes = {t: tight_box3d(m) for t, m in case.targets.items() if m.any()}
        preds = {}
        for before in (True, False):
            use(before, new_best, new_stream)
            session = VolumeSession(model, image8, config=PropagationConfig(encode_batch=4))
            for i, box in enumerate(boxes.values(), start=1):
                session.add_box3d(box, obj_id=i)
            session.propagate(progress=False)
            for i, target in enumerate(boxes, start=1):
                preds[(before, target)] = object_volume(session, i, vol8.shape)
        for target in boxes:
            a, b = preds[(True, target)], preds[(False, target)]
            print(f"| {case.name} | {target} | {dice3d(a, case.targets[target]):.4f} | "
                  f"{dice3d(b, case.targets[target]):.4f} | {np.array_equal(a, b)} |", flush=True)


def main() -> None:
    if sys.argv[1] == "--accuracy-3d":
        accuracy_3d(int(sys.argv[2]), int(sys.argv[3]))
        return
    slices, rounds = int(sys.argv[1]), int(sys.argv[2])
    model = load_model("litemedsam", device="cpu")
    print("default:", model.backend, model.precision, "threads", model.threads, flush=True)
    vol, spacing, mid, box = volume_100(slices)
    new_best, new_stream = Predictor.predict_best, OpenVinoModel._encode_streams

    def run(old):
        use(old, new_best, new_stream)
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        s = VolumeSession(model, vol, config=PropagationConfig(encode_batch=4))
        s.add_box(mid, box); s.propagate(progress=False)
        return time.perf_counter() - w0, time.process_time() - c0, {z: r.mask for z, r in s.results(1).items()}, len(s.encoded_slices)

    res = {"old": [], "new": []}
    for r in range(rounds):
        for k in ("old", "new"):
            res[k].append(run(k == "old")); print(k, f"{res[k][-1][0]:.1f} s wall {res[k][-1][1]:.1f} s cpu, {res[k][-1][3]} encoded", flush=True)
    for k in res:
        print(f"{k}: wall median {np.median([x[0] for x in res[k]]):.1f} s, cpu median {np.median([x[1] for x in res[k]]):.1f} s")
    a, b = res["old"][0][2], res["new"][0][2]
    ds = [dice(a[z], b[z]) for z in a if a[z].any() or b[z].any()]
    eq = np.mean([np.mean(a[z] == b[z]) for z in a])
    print(f"agreement new vs old: slices {len(a)} vs {len(b)}, same keys {a.keys() == b.keys()}, pixel agreement {eq:.6f}, "
          f"Dice mean {np.mean(ds):.5f} min {np.min(ds):.5f}, identical slices {sum(np.array_equal(a[z], b[z]) for z in a)}/{len(a)}")


if __name__ == "__main__":
    main()
