"""A6 — neuron clustering: which neurons paint similar kinds of texture? (SPEC §4 A6)

Per neuron k of a layer (one frame): A_k = |C_k|; neurons whose A_k is constant (dead) are
dropped; A_k is min-max normalised; its vector v_k holds the mean normalised value inside each
of G = 32 Gabor k-means pixel clusters. Because min-max normalisation is affine, the means come
from one streaming pass of per-group sums (GroupSums, an index-add i.e. a one-hot product) and
per-neuron min/max, never from a held layer. The vectors are embedded (PCA by default; UMAP when
the optional `umap` extra is installed) and clustered (k-means, k = 6 default; FINCH as the
parameter-free option). A second streaming pass sums the normalised maps per cluster (cluster
averages, again a one-hot product over neurons) and keeps only the few member maps shown.

Comparisons (beyond the paper): seed stability of the clustering (adjusted Rand index between
k-means runs with different seeds; the neurons correspond), between layers of a model and
between runs (`compare_runs`: architectures on the same frame, training seeds) by a symmetric
nearest-neighbour distance between the two neuron-vector sets (neurons do not correspond), with
ARI where they do (same model fingerprint). Every random choice is seeded from ctx.seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from xinc.analysis.registry import AnalysisContext, AnalysisResult, register_analysis
from xinc.canvas.reduce import GroupSums, LayerInfo, Reducer
from xinc.errors import XincError

AID = "a6"


@dataclass
class ClusterOptions:
    """Options of A6: pixel groups, clustering method, embedding, member maps kept, stability runs."""

    groups: int = 32  # Gabor k-means pixel clusters (the vector length)
    method: Literal["kmeans", "finch"] = "kmeans"  # "finch" is parameter-free
    k: int = 6  # k-means clusters
    embed: Literal["pca", "umap", "none"] = "pca"  # 2-D view for the figure (umap: optional extra)
    cluster_on: Literal["vectors", "embedding"] = "vectors"  # the G-dim vectors or the 2-D embedding
    members: int = 6  # member maps kept per cluster (data/a6.npz, shown in the figure)
    frame_pos: int = 0  # which of ctx.frames to analyse (position in the list)
    seed_runs: int = 3  # k-means runs (one init each, different seeds) for the stability ARI
    figures: bool = True  # keep the maps for the figures (False: numbers, tables and vectors only)
    dead_tol: float = 1e-7  # a neuron is dead when max A_k - min A_k <= dead_tol * the layer's max A

    def validate(self) -> None:
        if self.k < 1 or self.groups < 2:
            raise XincError(f"a6 options k={self.k}, groups={self.groups}: out of range ; need k >= 1 and groups >= 2")
        if self.members < 0 or self.frame_pos < 0 or self.seed_runs < 0 or self.dead_tol < 0:
            raise XincError(f"a6 options members={self.members}, frame_pos={self.frame_pos}, seed_runs="
                            f"{self.seed_runs}, dead_tol={self.dead_tol}: negative ; give values >= 0")


# ----------------------------------------------------------------------------- pixel groups


def gabor_labels(image: torch.Tensor, groups: int, seed: int) -> np.ndarray:
    """(H, W) int64 labels in [0, groups): k-means of the 24-kernel float Gabor responses of the frame."""
    from xinc.analysis import grouping

    lab = grouping.gabor_kmeans_labels(image, groups, seed=seed)
    lab = lab.detach().cpu().numpy() if isinstance(lab, torch.Tensor) else np.asarray(lab)
    _, inv = np.unique(lab, return_inverse=True)  # compact ids (k-means may leave a cluster empty)
    return inv.reshape(lab.shape).astype(np.int64)


# ----------------------------------------------------------------------------- streaming passes


class MinMax(Reducer):
    """Per-neuron min and max of A_k = |C_k| over pixels (one frame); result() -> (mins, maxs) (K,)."""

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self.mins = torch.zeros(info.num_neurons, dtype=torch.float64)
        self.maxs = torch.zeros(info.num_neurons, dtype=torch.float64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        a = maps.abs().flatten(1)
        self.mins[start:start + a.shape[0]] = a.amin(1).double().cpu()
        self.maxs[start:start + a.shape[0]] = a.amax(1).double().cpu()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mins, self.maxs


class ClusterMaps(Reducer):
    """Second pass: per-cluster sum of min-max-normalised maps and the maps of chosen members."""

    def __init__(self, assign: np.ndarray, num_clusters: int, mins: torch.Tensor, maxs: torch.Tensor,
                 members: np.ndarray) -> None:
        self.assign = torch.as_tensor(assign, dtype=torch.int64)  # (K,), -1 = dead / not clustered
        self.num_clusters = num_clusters
        self.mins, self.span = mins, (maxs - mins).clamp_min(1e-30)
        self.members = torch.as_tensor(members, dtype=torch.int64)
        self.member_maps: dict[int, torch.Tensor] = {}

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        super().begin_frame(info, frame)
        self.sums = torch.zeros(self.num_clusters + 1, info.height * info.width, dtype=torch.float64)

    def update(self, start: int, maps: torch.Tensor) -> None:
        n = maps.shape[0]
        a = maps.abs().flatten(1).double().cpu()
        norm = (a - self.mins[start:start + n, None]) / self.span[start:start + n, None]
        idx = self.assign[start:start + n].clone()
        idx[idx < 0] = self.num_clusters  # dead neurons go to a discarded extra row
        self.sums.index_add_(0, idx, norm)
        want = self.members[(self.members >= start) & (self.members < start + n)]
        for k, m in zip(want.tolist(), norm[want - start].float()):
            self.member_maps[k] = m.reshape(self.info.height, self.info.width)

    def result(self) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        counts = torch.bincount(self.assign[self.assign >= 0], minlength=self.num_clusters).double()
        avg = self.sums[: self.num_clusters] / counts.clamp_min(1)[:, None]
        return avg.float().reshape(self.num_clusters, self.info.height, self.info.width), self.member_maps


def neuron_vectors(group_sums: torch.Tensor, counts: np.ndarray, mins: torch.Tensor, maxs: torch.Tensor,
                   dead_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(alive neuron indices, (n_alive, G) vectors of mean min-max-normalised A_k per group).

    mean_g((A − min)/(max − min)) = (sum_g(A)/|g| − min)/(max − min): exact, from one pass.
    """
    sums = group_sums.double().numpy()
    mn, mx = mins.double().numpy(), maxs.double().numpy()
    span = mx - mn
    alive = np.flatnonzero(span > dead_tol * max(float(mx.max(initial=0.0)), 1e-30))
    means = sums[alive] / np.maximum(counts, 1)[None, :]
    vec = (means - mn[alive, None]) / span[alive, None]
    return alive, np.clip(vec, 0.0, 1.0).astype(np.float64)


# ----------------------------------------------------------------------------- embedding & clustering


def embed_2d(vectors: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D embedding of the neuron vectors: PCA (default), UMAP (optional extra) or the first two dims."""
    n = vectors.shape[0]
    if n < 3 or method == "none":
        out = np.zeros((n, 2))
        out[:, : min(2, vectors.shape[1])] = vectors[:, :2]
        return out, "first two groups"
    if method == "umap":
        try:
            import umap  # optional: pip install 'xinc[umap]'
        except ImportError:
            raise XincError("a6 option embed=umap needs the optional umap-learn package; "
                            "install it with `pip install 'xinc[umap]'` or use embed=pca") from None
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(vectors)), "UMAP"
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(vectors), "PCA"


def cluster_vectors(x: np.ndarray, method: str, k: int, seed: int, n_init: int = 4) -> np.ndarray:
    """Cluster labels (n,) in [0, c): seeded k-means, or FINCH's coarsest partition with >= 2 clusters."""
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if method == "finch":
        from finch import FINCH

        if n < 3:
            return np.zeros(n, dtype=np.int64)
        c, num_clust, _ = FINCH(x, distance="euclidean", random_state=seed, verbose=False)
        num_clust = np.atleast_1d(num_clust)
        levels = [i for i, m in enumerate(num_clust) if m >= 2]
        col = levels[-1] if levels else 0
        _, lab = np.unique(np.asarray(c)[:, col], return_inverse=True)
        return lab.astype(np.int64)
    from sklearn.cluster import KMeans

    kk = max(1, min(k, n, len(np.unique(x, axis=0))))
    return KMeans(n_clusters=kk, n_init=n_init, random_state=seed).fit_predict(x).astype(np.int64)


def seed_stability(x: np.ndarray, k: int, seed: int, runs: int) -> float | None:
    """Mean pairwise adjusted Rand index of single-init k-means labelings with `runs` different seeds."""
    from sklearn.metrics import adjusted_rand_score

    if runs < 2 or x.shape[0] <= k:
        return None
    labs = [cluster_vectors(x, "kmeans", k, seed + 1000 + r, n_init=1) for r in range(runs)]
    aris = [adjusted_rand_score(labs[i], labs[j]) for i in range(runs) for j in range(i + 1, runs)]
    return float(np.mean(aris))


def symmetric_nn_distance(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> float:
    """½(mean_a min_b ‖a−b‖ + mean_b min_a ‖b−a‖): how far two neuron-vector sets are (0 = same set)."""
    ta, tb = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if ta.shape[0] == 0 or tb.shape[0] == 0:
        return float("nan")

    def one_way(x: torch.Tensor, y: torch.Tensor) -> float:
        mins = torch.cat([torch.cdist(x[i:i + chunk], y).amin(1) for i in range(0, x.shape[0], chunk)])
        return float(mins.mean())

    return 0.5 * (one_way(ta, tb) + one_way(tb, ta))


def split_half_distance(x: np.ndarray, seed: int) -> float | None:
    """Reference scale: the symmetric NN distance between two random halves of one set."""
    if x.shape[0] < 4:
        return None
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    h = x.shape[0] // 2
    return symmetric_nn_distance(x[perm[:h]], x[perm[h:]])


def pick_members(labels: np.ndarray, alive: np.ndarray, per_cluster: int, seed: int) -> dict[int, list[int]]:
    """Seeded sample of up to `per_cluster` neuron indices (layer numbering) per cluster."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(int(labels.max(initial=-1)) + 1):
        idx = alive[labels == c]
        out[c] = sorted(rng.choice(idx, size=min(per_cluster, idx.size), replace=False).tolist())
    return out


def model_fingerprint(model_dir: Path | None) -> str | None:
    """sha1 of the model's weights file (neurons of two runs correspond only when it matches)."""
    if model_dir is None:
        return None
    f = Path(model_dir) / "model.safetensors"
    if not f.is_file():
        return None
    return hashlib.sha1(f.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the analysis


def layer_clusters(ctx: AnalysisContext, layer: str, frame: int, labels_px: np.ndarray,
                   opts: ClusterOptions, cmode: str) -> dict[str, Any]:
    """Both streaming passes and the clustering for one layer; returns arrays and numbers."""
    groups = int(labels_px.max()) + 1
    gs, mm = GroupSums(torch.as_tensor(labels_px), groups), MinMax()
    ctx.stream(layer, [gs, mm], cmode, [frame])
    mins, maxs = mm.result()
    counts = np.bincount(labels_px.ravel(), minlength=groups)
    alive, vec = neuron_vectors(gs.result()[frame], counts, mins, maxs, opts.dead_tol)
    emb, emb_name = embed_2d(vec, opts.embed, ctx.seed)
    space = emb if opts.cluster_on == "embedding" else vec
    labels = cluster_vectors(space, opts.method, opts.k, ctx.seed)
    ncl = int(labels.max(initial=-1)) + 1
    assign = np.full(mins.shape[0], -1, dtype=np.int64)
    assign[alive] = labels
    members = pick_members(labels, alive, opts.members, ctx.seed)
    flat_members = np.array(sorted(m for ms in members.values() for m in ms), dtype=np.int64)
    cm = ClusterMaps(assign, max(ncl, 1), mins, maxs, flat_members)
    if ncl:
        ctx.stream(layer, [cm], cmode, [frame])
        avg, member_maps = cm.result()
    else:
        avg, member_maps = torch.zeros(0, *labels_px.shape), {}
    sil = None
    if 2 <= ncl < len(labels):
        from sklearn.metrics import silhouette_score

        sil = float(silhouette_score(space, labels, random_state=ctx.seed))
    stab = seed_stability(vec, opts.k, ctx.seed, opts.seed_runs) if opts.method == "kmeans" else None
    return {"alive": alive, "vectors": vec, "embedding": emb, "embed_name": emb_name, "labels": labels,
            "num_neurons": int(mins.shape[0]), "avg": avg.numpy(), "members": members,
            "member_maps": {k: v.numpy() for k, v in member_maps.items()}, "silhouette": sil,
            "seed_ari": stab, "centers": np.stack([vec[labels == c].mean(0) for c in range(ncl)]) if ncl
            else np.zeros((0, vec.shape[1]))}


def _layer_arrays(layer: str, r: dict[str, Any], keep_maps: bool) -> dict[str, np.ndarray]:
    """The arrays of one layer saved in data/a6.npz: vectors and labels, and (for figures) maps and members."""
    out = {f"{layer}/neurons": r["alive"], f"{layer}/vectors": r["vectors"], f"{layer}/labels": r["labels"],
           f"{layer}/embedding": r["embedding"], f"{layer}/centers": r["centers"]}
    if keep_maps:
        ids = sorted(r["member_maps"])
        out[f"{layer}/cluster_maps"] = r["avg"].astype(np.float32)
        out[f"{layer}/member_ids"] = np.array(ids, dtype=np.int64)
        out[f"{layer}/member_cluster"] = np.array([c for k in ids for c, ms in r["members"].items() if k in ms],
                                                  dtype=np.int64)
        h, w = r["avg"].shape[-2:] if len(r["avg"]) else (0, 0)
        out[f"{layer}/member_maps"] = (np.stack([r["member_maps"][k] for k in ids]).astype(np.float32) if ids
                                       else np.zeros((0, h, w), np.float32))
    return out


def _per_layer(r: dict[str, Any], seed: int) -> dict[str, Any]:
    sizes = np.bincount(r["labels"], minlength=int(r["labels"].max(initial=-1)) + 1).tolist()
    return {"neurons": r["num_neurons"], "dead": r["num_neurons"] - len(r["alive"]), "clusters": len(sizes),
            "sizes": sizes, "silhouette": r["silhouette"], "seed_ari": r["seed_ari"],
            "split_half_nn": split_half_distance(r["vectors"], seed), "embedding": r["embed_name"]}


def _lines(per_layer: dict[str, dict[str, Any]], layer_dist: dict[str, float]) -> list[str]:
    summary = []
    for layer, s in per_layer.items():
        text = f"{layer}: {s['neurons'] - s['dead']} live neurons ({s['dead']} dead) in {s['clusters']} clusters"
        if s["silhouette"] is not None:
            text += f", silhouette {s['silhouette']:.2f}"
        if s["seed_ari"] is not None:
            text += f", k-means seed ARI {s['seed_ari']:.2f}"
        summary.append(text)
    if layer_dist:
        (pair, d), = sorted(layer_dist.items(), key=lambda kv: kv[1])[:1]
        summary.append(f"most similar layers: {pair.replace('~', ' and ')} (symmetric NN distance {d:.3f})")
    return summary


@register_analysis(AID, "Neuron clustering by Gabor-texture profile", options=ClusterOptions)
def run(ctx: AnalysisContext, opts: ClusterOptions) -> AnalysisResult:
    """A6 on every layer of ctx (one frame): neuron vectors, clusters, stability, layer distances."""
    if not opts.frame_pos < len(ctx.frames):
        raise XincError(f"a6 option frame_pos={opts.frame_pos}: only {len(ctx.frames)} frames are analysed ; "
                        "give a smaller frame_pos")
    frame = ctx.frames[opts.frame_pos]
    labels_px = gabor_labels(ctx.images[opts.frame_pos], opts.groups, ctx.seed)
    cmode = ctx.variants()[-1][1]  # linear canvases where available (A6 is not a paper-fidelity test)
    results = {layer: layer_clusters(ctx, layer, frame, labels_px, opts, cmode) for layer in ctx.layers}
    per_layer = {layer: _per_layer(r, ctx.seed) for layer, r in results.items()}
    names = list(results)
    layer_dist = {f"{a}~{b}": symmetric_nn_distance(results[a]["vectors"], results[b]["vectors"])
                  for i, a in enumerate(names) for b in names[i + 1:]}
    res = AnalysisResult({"frame": frame, "groups": int(labels_px.max()) + 1, "method": opts.method, "k": opts.k,
                          "embed": opts.embed, "canvas_mode": cmode, "layers": per_layer, "layer_distance": layer_dist,
                          "members": opts.members}, summary=_lines(per_layer, layer_dist))
    res.arrays = {"pixel_groups": labels_px, "frame": np.array(frame),
                  "fingerprint": np.array(model_fingerprint(ctx.model_dir) or ""),
                  "image": ctx.images[opts.frame_pos].detach().cpu().clamp(0, 1).numpy().astype(np.float32)}
    for layer, r in results.items():
        res.arrays.update(_layer_arrays(layer, r, opts.figures))
    res.tables["assignments"] = [{"layer": layer, "neuron": k, "cluster": c} for layer, r in results.items()
                                 for k, c in zip(r["alive"].tolist(), r["labels"].tolist())]
    return res


# ----------------------------------------------------------------------------- across runs


def load_layer_vectors(run_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {neurons, vectors, labels, pixel_groups, frame, fingerprint}} from an analyze run's data/a6.npz."""
    run_dir = Path(run_dir)
    path = run_dir / "data" / "a6.npz"
    if not path.is_file():
        raise XincError(f"{run_dir}: no data/a6.npz ; run `xinc analyze` with analysis a6 first")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    shared = {k: arrays[k] for k in ("pixel_groups", "frame", "fingerprint")}
    layers = [k[: -len("/vectors")] for k in arrays if k.endswith("/vectors")]
    return {la: {**shared, **{k: arrays[f"{la}/{k}"] for k in ("neurons", "vectors", "labels")}} for la in layers}


def compare_runs(run_a: str | Path, run_b: str | Path, seed: int = 0) -> dict[str, Any]:
    """Compare the A6 neuron vectors of two analyze runs layer by layer (architectures, seeds).

    Every (layer_a, layer_b) pair gets the symmetric NN distance of the vector sets, beside each
    set's split-half distance as the scale of "indistinguishable"; where both runs analysed the
    same weights (same fingerprint) on the same pixel groups, the neurons correspond and the
    adjusted Rand index of their cluster labels is reported too.
    """
    from sklearn.metrics import adjusted_rand_score

    va, vb = load_layer_vectors(run_a), load_layer_vectors(run_b)
    pairs = []
    for la, a in va.items():
        for lb, b in vb.items():
            same_groups = a["pixel_groups"].shape == b["pixel_groups"].shape and bool(
                (a["pixel_groups"] == b["pixel_groups"]).all())
            row = {"layer_a": la, "layer_b": lb, "neurons_a": int(len(a["neurons"])),
                   "neurons_b": int(len(b["neurons"])), "same_pixel_groups": same_groups,
                   "nn_distance": symmetric_nn_distance(a["vectors"], b["vectors"]),
                   "split_half_a": split_half_distance(a["vectors"], seed),
                   "split_half_b": split_half_distance(b["vectors"], seed), "ari": None}
            fa, fb = str(a["fingerprint"]), str(b["fingerprint"])
            if fa and fa == fb and la == lb:
                common, ia, ib = np.intersect1d(a["neurons"], b["neurons"], return_indices=True)
                if common.size >= 2:
                    row["ari"] = float(adjusted_rand_score(a["labels"][ia], b["labels"][ib]))
            pairs.append(row)
    return {"run_a": str(run_a), "run_b": str(run_b), "pairs": pairs}
