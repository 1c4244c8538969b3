"""Which windows share a voice: agglomerative clustering of unit vectors on cosine similarity.

Pure NumPy. Single 1.6 s windows are noisy voice prints, so the clustering runs on chunks: runs of
a few neighbouring windows of one stretch of speech, averaged (voices change mostly at pauses,
and a chunk that straddles a change is corrected when each window is reassigned). Average linkage
merges the two most similar groups until the next merge would join
groups less alike than `threshold` (the number of speakers found), or until the count the user
gave is reached. Groups too small to be a speaker (a cough, a laugh, crosstalk) are folded into the
nearest real one, then every window goes to the voice whose centroid it is closest to. Labels are
numbered by first appearance, so the answer is a function of the vectors alone: the same input
gives the same labels, whichever speaker is called what.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.69  # below: different voices (0.64-0.74 all found the right count, docs/benchmarks.md)
MAX_POINTS = 1500  # longer inputs are clustered on runs of neighbouring windows (memory and time)
MIN_SHARE = 0.01  # a group under this share of the windows (and under MIN_WINDOWS) is not a speaker
MIN_WINDOWS = 4
REFINE_ROUNDS = 5


@dataclass(frozen=True)
class SpeakerCount:
    """What is known of the number of speakers: exactly `exactly`, or within [least, most]."""

    exactly: int | None = None
    least: int = 1
    most: int | None = None

    def clamp(self, found: int, points: int) -> int:
        if self.exactly is not None:
            return min(self.exactly, points)
        count = max(found, self.least)
        if self.most is not None:
            count = min(count, self.most)
        return max(1, min(count, points))


def cluster(vectors: np.ndarray, count: SpeakerCount = SpeakerCount(),
            threshold: float = DEFAULT_THRESHOLD, chunks=None) -> np.ndarray:
    """A speaker label (0, 1, ... by first appearance) for each row of `vectors` (unit rows).

    chunks: lists of row numbers clustered together as one averaged point (default: each row)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    members = [np.asarray(rows, dtype=np.int64) for rows in chunks] if chunks is not None else \
        [np.array([i]) for i in range(n)]
    points, members = _compress(vectors, members)
    merges = _average_linkage(points, weights=np.array([len(m) for m in members], dtype=np.float64))
    found = len(points) - _merges_above(merges, threshold)
    wanted = count.clamp(found, len(points))
    point_labels = _labels_after(merges, len(points), len(points) - wanted)
    labels = np.empty(n, dtype=np.int64)
    for label, rows in zip(point_labels, members):
        labels[rows] = label
    if count.exactly is None:
        labels = _fold_small(vectors, labels, keep_at_least=count.least)
    labels = _refine(vectors, labels)
    return first_appearance(labels)


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0, 1, 2, ... in the order they first occur."""
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(label), len(order)) for label in labels], dtype=np.int64)


def _compress(vectors: np.ndarray, chunks: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The chunks' averaged points; at most MAX_POINTS, by joining neighbouring chunks."""
    run = max(1, int(np.ceil(len(chunks) / MAX_POINTS)))
    members = [np.concatenate(chunks[i:i + run]) for i in range(0, len(chunks), run)]
    points = np.array([vectors[rows].mean(axis=0) for rows in members])
    points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    return points, members


def _average_linkage(points: np.ndarray, weights: np.ndarray) -> list[tuple[int, int, float]]:
    """Every merge down to one group: (kept, absorbed, similarity), most similar first.

    Each row remembers its most similar partner, so a merge costs O(n) instead of a full search.
    """
    n = len(points)
    sim = points @ points.T
    np.fill_diagonal(sim, -np.inf)
    size = weights.copy()
    alive = np.ones(n, dtype=bool)
    best = sim.argmax(axis=1) if n > 1 else np.zeros(n, dtype=np.int64)
    best_sim = sim[np.arange(n), best] if n > 1 else np.full(n, -np.inf)
    merges = []
    for _ in range(n - 1):
        a = int(np.argmax(best_sim))
        b = int(best[a])
        a, b = min(a, b), max(a, b)
        merges.append((a, b, float(sim[a, b])))
        merged = (size[a] * sim[a] + size[b] * sim[b]) / (size[a] + size[b])
        size[a] += size[b]
        alive[b] = False
        merged[~alive] = -np.inf
        merged[a] = -np.inf
        sim[a], sim[:, a] = merged, merged
        sim[b], sim[:, b] = -np.inf, -np.inf
        best_sim[b] = -np.inf
        stale = np.flatnonzero(alive & ((best == a) | (best == b)))
        for row in stale:
            best[row] = int(np.argmax(sim[row]))
            best_sim[row] = sim[row, best[row]]
        rising = alive & (merged > best_sim)
        best[rising] = a
        best_sim[rising] = merged[rising]
        if alive.sum() > 1:
            best[a] = int(np.argmax(sim[a]))
            best_sim[a] = sim[a, best[a]]
        else:
            best_sim[a] = -np.inf
    return merges


def _merges_above(merges, threshold: float) -> int:
    """How many merges come before the first that joins groups less alike than the threshold."""
    for done, (_, _, similarity) in enumerate(merges):
        if similarity < threshold:
            return done
    return len(merges)


def _labels_after(merges, n: int, steps: int) -> np.ndarray:
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in merges[:steps]:
        parent[root(b)] = root(a)
    return np.array([root(i) for i in range(n)], dtype=np.int64)


def _centroids(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = np.unique(labels)
    centres = np.array([vectors[labels == name].mean(axis=0) for name in names])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return names, centres


def _fold_small(vectors: np.ndarray, labels: np.ndarray, keep_at_least: int) -> np.ndarray:
    names, counts = np.unique(labels, return_counts=True)
    floor = max(MIN_WINDOWS, MIN_SHARE * len(labels))
    ranked = names[np.argsort(-counts, kind="stable")]
    big = [name for name, size in zip(names, counts) if size >= floor]
    for name in ranked:  # the user asked for at least this many: keep the largest ones
        if len(big) >= keep_at_least:
            break
        if name not in big:
            big.append(name)
    if not big or len(big) == len(names):
        return labels
    names_big, centres = _centroids(vectors, np.where(np.isin(labels, big), labels, -1))
    keep = names_big != -1
    names_big, centres = names_big[keep], centres[keep]
    small = ~np.isin(labels, big)
    labels = labels.copy()
    labels[small] = names_big[np.argmax(vectors[small] @ centres.T, axis=1)]
    return labels


def _refine(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A few k-means rounds from the clustering's own groups (never adding or losing a voice)."""
    for _ in range(REFINE_ROUNDS):
        names, centres = _centroids(vectors, labels)
        moved = names[np.argmax(vectors @ centres.T, axis=1)]
        if len(np.unique(moved)) < len(names) or np.array_equal(moved, labels):
            break
        labels = moved
    return labels
