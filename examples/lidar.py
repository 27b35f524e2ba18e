"""Synthetic LiDAR scans that look like a 64-beam spinning sensor in a street.

A ray is cast for every (beam, azimuth) pair of an HDL-64E-like sensor mounted 1.73 m above a
ground plane; the scene holds box-shaped cars, pedestrians, poles and building fronts. Each return
carries (x, y, z, intensity) in the sensor frame, with range noise, dropped returns, and an
intensity that depends on the surface and the angle of incidence. Nothing here needs torch.

    python examples/lidar.py            # prints a scan's statistics
"""

from __future__ import annotations

import numpy as np

SENSOR_HEIGHT = 1.73
MAX_RANGE = 80.0


def beam_elevations(beams: int = 64) -> np.ndarray:
    """Elevation angles (degrees) of an HDL-64E: an upper block at 1/3° spacing from +2°, a lower
    block at 1/2° spacing below it."""
    upper = beams // 2
    hi = 2.0 - np.arange(upper) / 3.0
    lo = hi[-1] - 0.5 - 0.5 * np.arange(beams - upper)
    return np.concatenate([hi, lo])


def street_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Boxes as rows (cx, cy, cz, length, width, height, yaw) and their reflectivity."""
    boxes, refl = [], []

    def add(n, size, spread, refl_range, yaw_jitter=np.pi, z_base=-SENSOR_HEIGHT, lane=None):
        for _ in range(n):
            l, w, h = (rng.uniform(a, b) for a, b in size)
            if lane is None:
                cx, cy = rng.uniform(-spread, spread, 2)
            else:
                cx, cy = rng.uniform(-spread, spread), rng.choice(lane) + rng.normal(0, 0.4)
            if np.hypot(cx, cy) < 3.5:  # nothing stands on the sensor's own car
                cx += 5.0
            boxes.append((cx, cy, z_base + h / 2, l, w, h, rng.normal(0, yaw_jitter)))
            refl.append(rng.uniform(*refl_range))

    # cars along the lanes, mostly aligned with the road (x axis)
    add(18, ((3.8, 4.9), (1.7, 2.0), (1.4, 1.8)), 45, (0.35, 0.8), yaw_jitter=0.08, lane=(-5.2, -1.7, 1.7, 5.2))
    add(6, ((4.0, 4.6), (1.7, 1.9), (1.4, 1.6)), 40, (0.35, 0.8), yaw_jitter=0.1, lane=(-8.5, 8.5))  # parked
    add(10, ((0.4, 0.8), (0.4, 0.7), (1.5, 1.9)), 30, (0.2, 0.45))           # pedestrians
    add(12, ((0.2, 0.35), (0.2, 0.35), (4.0, 7.0)), 50, (0.5, 0.9))          # poles, tree trunks
    # building fronts behind the sidewalks, a few metres deep, with gaps between them
    for side in (-1, 1):
        x = -70.0
        while x < 70.0:
            length = rng.uniform(8, 25)
            depth, height = rng.uniform(6, 15), rng.uniform(5, 18)
            y = side * (rng.uniform(11, 14) + depth / 2)
            boxes.append((x + length / 2, y, -SENSOR_HEIGHT + height / 2, length, depth, height, 0.0))
            refl.append(rng.uniform(0.25, 0.6))
            x += length + rng.uniform(1, 6)
    return np.array(boxes), np.array(refl)


def _hit_boxes(dirs: np.ndarray, boxes: np.ndarray):
    """Nearest positive hit of rays from the origin against oriented boxes: (t, box, cos incidence)."""
    best_t = np.full(len(dirs), np.inf)
    best_box = np.full(len(dirs), -1)
    best_cos = np.zeros(len(dirs))
    for b, (cx, cy, cz, l, w, h, yaw) in enumerate(boxes):
        c, s = np.cos(-yaw), np.sin(-yaw)
        o = np.array([-(c * cx - s * cy), -(s * cx + c * cy), -cz])  # sensor origin in the box frame
        d = np.stack([c * dirs[:, 0] - s * dirs[:, 1], s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], 1)
        half = np.array([l, w, h]) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / d, (half - o) / d
        near, far = np.fmin(t1, t2), np.fmax(t1, t2)
        t_in, t_out = near.max(1), far.min(1)
        hit = (t_in <= t_out) & (t_in > 0) & (t_in < best_t)
        best_t[hit] = t_in[hit]
        best_box[hit] = b
        axis = near[hit].argmax(1)
        best_cos[hit] = np.abs(d[hit, axis])
    return best_t, best_box, best_cos


def synthetic_scan(seed: int = 0, beams: int = 64, azimuth_steps: int = 1800) -> np.ndarray:
    """One sweep: float32 [P, 4] rows (x, y, z, intensity), about 100k points at the defaults."""
    rng = np.random.default_rng(seed)
    boxes, refl = street_scene(rng)
    elev = np.radians(beam_elevations(beams))[:, None]
    azim = np.radians(np.arange(azimuth_steps) * 360.0 / azimuth_steps)[None, :]
    azim = azim + rng.normal(0, 0.0005, (beams, 1))  # the lasers are not perfectly aligned
    dirs = np.stack(np.broadcast_arrays(np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim),
                                        np.sin(elev)), -1).reshape(-1, 3)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < 0, -SENSOR_HEIGHT / dirs[:, 2], np.inf)
    t_box, box, cos_box = _hit_boxes(dirs, boxes)
    on_box = t_box < t_ground
    t = np.where(on_box, t_box, t_ground)
    keep = (t < MAX_RANGE) & (rng.random(len(t)) > 0.03)  # a few returns get lost
    dirs, t, on_box, box, cos_box = dirs[keep], t[keep], on_box[keep], box[keep], cos_box[keep]
    t = t + rng.normal(0, 0.015, len(t))
    pts = dirs * t[:, None]
    y_road = pts[:, 1]
    crown = -0.0015 * np.minimum(np.abs(y_road), 10.0) ** 2  # the road falls off toward the kerbs
    pts[:, 2] += np.where(on_box, 0.0, crown + rng.normal(0, 0.01, len(t)))
    # intensity: surface reflectivity × incidence, dimmer with range; lane markings shine
    ground_refl = np.where((np.abs(np.abs(y_road) - 3.45) < 0.08) & ((pts[:, 0] % 6.0) < 3.0), 0.8, 0.18)
    r = np.where(on_box, refl[box], ground_refl)
    cos = np.where(on_box, cos_box, np.abs(dirs[:, 2]))
    intensity = r * np.sqrt(np.clip(cos, 0.05, 1.0)) * (1.0 - 0.004 * t) * rng.uniform(0.9, 1.1, len(t))
    out = np.concatenate([pts, np.clip(intensity, 0, 1)[:, None]], 1)
    return out.astype(np.float32)


def crop(points: np.ndarray, x=(0.0, 12.0), y=(-6.0, 6.0)) -> np.ndarray:
    """The points inside an axis-aligned rectangle of the ground plane (small test inputs)."""
    inside = (points[:, 0] >= x[0]) & (points[:, 0] < x[1]) & (points[:, 1] >= y[0]) & (points[:, 1] < y[1])
    return points[inside]


if __name__ == "__main__":
    scan = synthetic_scan()
    r = np.hypot(scan[:, 0], scan[:, 1])
    print(f"{len(scan)} points; range {r.min():.1f}..{r.max():.1f} m; z {scan[:, 2].min():.2f}..{scan[:, 2].max():.2f} m;"
          f" intensity mean {scan[:, 3].mean():.3f}; above ground {np.mean(scan[:, 2] > -1.5):.1%}")
    print(f"cropped 12 m x 12 m patch: {len(crop(scan))} points")
