"""One subject's fetal thorax and heart, and the drawing of each transverse plane level.

Coordinates are thorax units in the fetal frame: x points to the fetal left, y anterior, the
thoracic cavity has a half-width of 1 and the spine sits posterior at y ≈ -0.75. The heart has
its own frame: u along the long axis towards the apex (about 45° left of the antero-posterior
axis), v across it towards the right heart (RV, RA). See shared ANATOMY.md for what each plane shows.

A plane is drawn in two cardiac states: systole (atrioventricular valves closed, semilunar valves
open) and diastole (the reverse); the renderer blends them with the heartbeat and adds the
chambers' contraction as a warp.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import zoom

from benchmark.data.simulator.config import OTHER_LEVEL
from benchmark.data.simulator.shapes import Canvas, bezier

EXTENT = 1.45  # the drawn square is [-EXTENT, EXTENT]², the body with margin
BONE_ATTEN = 14.0  # attenuation per thorax unit: a rib or vertebra (≈0.07 thick) shadows ~60–70 %
FLUID = 0.003  # anechoic: blood, amniotic fluid (≈ -50 dB below bright walls)


@dataclass(frozen=True)
class SubjectAnatomy:
    """Everything that makes one fetus look like itself (sampled once per subject)."""

    thorax_ay: float  # antero-posterior half-axis of the cavity (the lateral one is 1)
    apex_angle: float  # radians left of the antero-posterior axis
    heart_center: tuple[float, float]
    heart_scale: float
    chambers: tuple[float, float, float, float]  # LV, RV, LA, RA size factors
    septum: float  # interventricular septum thickness
    wall: float  # free wall / pericardium thickness
    vessel_scale: float
    vessel_jitter: np.ndarray  # (8, 2) small offsets of the great vessels
    three_vessel_angle: float  # tilt of the 3VV line
    myocardium: float  # echogenicities
    lung: float
    thymus: float
    liver: float
    bright: float
    ribs: np.ndarray  # angles (radians) where a rib arc starts, both sides
    texture: np.ndarray  # coarse multiplicative tissue-texture field


def sample_subject(rng: np.random.Generator) -> SubjectAnatomy:
    ribs_left = rng.uniform(-0.9, 1.1, size=rng.integers(2, 5))
    ribs_right = np.pi - rng.uniform(-0.9, 1.1, size=rng.integers(2, 5))
    return SubjectAnatomy(
        thorax_ay=float(rng.uniform(0.84, 0.96)),
        apex_angle=float(np.deg2rad(45 + np.clip(rng.normal(0, 9), -20, 20))),
        heart_center=(float(0.12 + rng.normal(0, 0.03)), float(0.10 + rng.normal(0, 0.03))),
        heart_scale=float(rng.uniform(0.88, 1.12)),
        chambers=tuple(float(v) for v in rng.uniform(0.85, 1.15, 4)),
        septum=float(rng.uniform(0.035, 0.065)),
        wall=float(rng.uniform(0.02, 0.04)),
        vessel_scale=float(rng.uniform(0.85, 1.15)),
        vessel_jitter=rng.normal(0, 0.025, (8, 2)).astype(np.float32),
        three_vessel_angle=float(np.deg2rad(rng.normal(0, 8))),
        myocardium=float(rng.uniform(0.035, 0.08)),
        lung=float(rng.uniform(0.09, 0.2)),
        thymus=float(rng.uniform(0.03, 0.07)),
        liver=float(rng.uniform(0.05, 0.12)),
        bright=float(rng.uniform(0.3, 0.6)),
        ribs=np.concatenate([ribs_left, ribs_right]).astype(np.float32),
        texture=rng.normal(0, 1, (7, 7)).astype(np.float32),
    )


def draw_level(anat: SubjectAnatomy, level: int, systole: bool, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Echo and attenuation maps (size×size float32) of `level` (OTHER_LEVEL, or 0..4 = 4CH..3VT)."""
    c = Canvas(size, EXTENT, background=FLUID)
    _body(c, anat, abdomen=level == OTHER_LEVEL)
    if level == OTHER_LEVEL:
        _abdomen(c, anat)
    elif level == 0:
        _four_chamber(c, anat, systole)
    elif level == 1:
        _lvot(c, anat, systole)
    elif level == 2:
        _rvot(c, anat, systole)
    elif level == 3:
        _three_vessel(c, anat)
    elif level == 4:
        _three_vessel_trachea(c, anat)
    else:
        raise ValueError(f"unknown level {level}")
    field = zoom(anat.texture, size / anat.texture.shape[0], order=1, grid_mode=False)[:size, :size]
    c.texture(np.exp(0.22 * field).astype(np.float32))
    return c.echo, c.atten


class _Heart:
    """Maps heart-frame (u, v) to thorax coordinates."""

    def __init__(self, anat: SubjectAnatomy, shift=(0.0, 0.0), scale: float = 1.0):
        a = anat.apex_angle
        self.a = np.array([np.sin(a), np.cos(a)], np.float32)  # towards the apex
        self.p = np.array([-np.cos(a), np.sin(a)], np.float32)  # towards the right heart
        self.c = np.array(anat.heart_center, np.float32) + np.asarray(shift, np.float32)
        self.s = anat.heart_scale * scale
        self.angle = float(np.arctan2(self.a[1], self.a[0]))

    def __call__(self, u: float, v: float) -> np.ndarray:
        return self.c + self.s * (u * self.a + v * self.p)

    def pts(self, *uv) -> np.ndarray:
        return np.stack([self(u, v) for u, v in uv])


def _body(c: Canvas, anat: SubjectAnatomy, abdomen: bool) -> None:
    ay = anat.thorax_ay
    c.ellipse((0, 0), (1.12, ay + 0.12), 0, 0.05)  # subcutaneous tissue and muscle
    c.ring((0, 0), (1.12, ay + 0.12), 0, 0.03, 0.3)  # skin
    c.ellipse((0, 0), (1.0, ay), 0, anat.liver if abdomen else anat.lung)
    for phi in anat.ribs:
        ends = [(1.0 * np.cos(t), ay * np.sin(t)) for t in (phi, phi + 0.28)]
        c.tube(np.array(ends) * 1.03, 0.032, 1.0, BONE_ATTEN)
    # Spine: vertebral body and the two laminae (the echogenic triangle), spinal canal between.
    y0 = -0.8 * ay
    c.ellipse((0, y0), (0.095, 0.085), 0, 1.0, BONE_ATTEN)
    for side in (-1, 1):
        c.tube([(side * 0.07, y0 - 0.1), (side * 0.12, y0 - 0.24)], 0.032, 1.0, BONE_ATTEN)
    c.ellipse((0, y0 - 0.13), (0.035, 0.035), 0, 0.02, 0.0)
    if not abdomen:  # descending aorta, left of the spine
        j = anat.vessel_jitter[7]
        c.ring((0.13 + j[0], -0.56 * ay), (0.06, 0.06), 0, 0.02, anat.bright)
        c.ellipse((0.13 + j[0], -0.56 * ay), (0.05, 0.05), 0, FLUID)


def _heart_shell(c: Canvas, anat: SubjectAnatomy, h: _Heart, axes=(0.6, 0.48)) -> None:
    ax = (axes[0] * h.s, axes[1] * h.s)
    c.ellipse(h.c, (ax[0] + anat.wall, ax[1] + anat.wall), h.angle, anat.bright)  # pericardium
    c.ellipse(h.c, ax, h.angle, anat.myocardium)


def _ventricles(c: Canvas, anat: SubjectAnatomy, h: _Heart, rv_factor: float = 1.0):
    lv, rv, _, _ = anat.chambers
    half = anat.septum / 2 / h.s
    lv_c = (0.14, -(half + 0.15 * lv))
    rv_c = (0.10, half + 0.17 * rv * rv_factor)
    c.ellipse(h(*lv_c), (0.30 * lv * h.s, 0.15 * lv * h.s), h.angle, FLUID)
    c.ellipse(h(*rv_c), (0.25 * rv * h.s * rv_factor, 0.17 * rv * h.s * rv_factor), h.angle, FLUID)
    # Moderator band across the RV apex.
    c.tube(h.pts((0.24, half), (0.27, half + 0.25 * rv * rv_factor)), 0.012, anat.bright * 0.8)
    return lv_c, rv_c, half


def _four_chamber(c: Canvas, anat: SubjectAnatomy, systole: bool) -> None:
    h = _Heart(anat)
    _heart_shell(c, anat, h)
    lv, rv, la, ra = anat.chambers
    lv_c, rv_c, half = _ventricles(c, anat, h)
    ahalf = 0.6 * half
    la_c = (-0.31, -(ahalf + 0.15 * la))
    ra_c = (-0.31, ahalf + 0.16 * ra)
    c.ellipse(h(*la_c), (0.15 * la * h.s, 0.15 * la * h.s), h.angle, FLUID)
    c.ellipse(h(*ra_c), (0.16 * ra * h.s, 0.16 * ra * h.s), h.angle, FLUID)
    # AV junctions: open cavities from atrium to ventricle; the tricuspid sits nearer the apex.
    mitral_u, tricuspid_u = -0.17, -0.14
    c.ellipse(h(mitral_u, lv_c[1]), (0.06 * h.s, 0.13 * lv * h.s), h.angle, FLUID)
    c.ellipse(h(tricuspid_u, rv_c[1]), (0.06 * h.s, 0.14 * rv * h.s), h.angle, FLUID)
    # Crux: where the atrial and ventricular septa meet the valve planes.
    c.ellipse(h(-0.155, 0), (0.035 * h.s, max(half, 0.03) * h.s), h.angle, anat.bright)
    # Foramen ovale: a gap in the atrial septum with its flap bulging into the LA.
    c.ellipse(h(-0.31, 0), (0.035 * h.s, (ahalf + 0.01) * h.s), h.angle, FLUID)
    c.tube(h.pts((-0.27, -ahalf), (-0.33, -ahalf - 0.07)), 0.01, anat.bright * 0.8)
    for u, (_, vc), width in ((mitral_u, lv_c, 0.13 * lv), (tricuspid_u, rv_c, 0.14 * rv)):
        if systole:  # closed: a bright line across the junction
            c.tube(h.pts((u, vc - width), (u, vc + width)), 0.013, anat.bright)
        else:  # open: two leaflets swung into the ventricle
            for side in (-1, 1):
                c.tube(h.pts((u, vc + side * width), (u + 0.13, vc + side * 0.6 * width)), 0.011, anat.bright)


def _lvot(c: Canvas, anat: SubjectAnatomy, systole: bool) -> None:
    h = _Heart(anat, shift=(0.0, 0.02))
    _heart_shell(c, anat, h, axes=(0.58, 0.46))
    lv, rv, la, _ = anat.chambers
    lv_c, rv_c, half = _ventricles(c, anat, h, rv_factor=0.9)
    c.ellipse(h(-0.4, -0.2), (0.08 * la * h.s, 0.07 * la * h.s), h.angle, FLUID)  # receding LA
    r = 0.06 * anat.vessel_scale / h.s
    root = (-0.13, lv_c[1] + 0.04)
    path = [root, (-0.36, 0.1), (-0.62, 0.3)]  # from the LV towards the fetal right shoulder
    pts = bezier(h(*path[0]), h(*path[1]), h(*path[2]), 5)
    c.vessel(pts, r * h.s, 0.022, anat.bright, FLUID)
    c.ellipse(h(-0.06, lv_c[1]), (0.12 * h.s, 0.085 * lv * h.s), h.angle, FLUID)  # outflow tract
    _semilunar_valve(c, anat, h, root, path[1], r, opened=systole)


def _semilunar_valve(c: Canvas, anat: SubjectAnatomy, h: _Heart, root, towards, r: float, opened: bool) -> None:
    d = np.subtract(towards, root)
    d /= np.linalg.norm(d)
    n = np.array([-d[1], d[0]])
    base = np.asarray(root) + 0.06 * d
    for side in (-1, 1):
        p0 = base + side * r * n
        p1 = p0 + 0.09 * d if opened else base + side * 0.1 * r * n + 0.03 * d
        c.tube(h.pts(tuple(p0), tuple(p1)), 0.01, anat.bright)


def _rvot(c: Canvas, anat: SubjectAnatomy, systole: bool) -> None:
    h = _Heart(anat, shift=(-0.02, 0.06), scale=0.92)
    _heart_shell(c, anat, h, axes=(0.55, 0.44))
    lv, rv, _, _ = anat.chambers
    half = anat.septum / 2 / h.s
    c.ellipse(h(0.12, -(half + 0.1 * lv)), (0.2 * lv * h.s, 0.09 * lv * h.s), h.angle, FLUID)  # LV tip
    rv_c = (0.02, half + 0.16 * rv)
    c.ellipse(h(*rv_c), (0.27 * rv * h.s, 0.15 * rv * h.s), h.angle, FLUID)
    j = anat.vessel_jitter
    vs = anat.vessel_scale
    # Aorta in cross-section, right of the pulmonary artery.
    ao = h(-0.36, 0.02) + j[0]
    c.ring(ao, (0.085 * vs, 0.085 * vs), 0, 0.025, anat.bright)
    c.ellipse(ao, (0.075 * vs, 0.075 * vs), 0, FLUID)
    # Pulmonary artery: leaves the anterior RV, crosses in front of the aorta, runs to the spine.
    start = h(-0.2, rv_c[1] + 0.06)
    fork = np.array([0.12, -0.22], np.float32) + j[1]
    desc = np.array([0.13, -0.5 * anat.thorax_ay], np.float32)
    mid = (start + fork) / 2 + np.array([0.08, 0.0], np.float32)
    r = 0.07 * vs
    c.vessel(bezier(start, mid, fork, 5), r, 0.022, anat.bright, FLUID)
    c.vessel([fork, desc], 0.75 * r, 0.02, anat.bright, FLUID)  # ductus arteriosus
    c.vessel([fork, ao + np.array([-0.06, -0.14], np.float32) + j[2]], 0.6 * r, 0.02, anat.bright, FLUID)  # RPA
    c.ellipse(start, (0.08 * h.s, 0.08 * h.s), 0, FLUID)  # RV outflow
    d = (mid - start) / np.linalg.norm(mid - start)
    n = np.array([-d[1], d[0]])
    base = start + 0.08 * d
    for side in (-1, 1):  # pulmonary valve: open in systole
        p0 = base + side * r * n
        p1 = p0 + 0.08 * d if systole else base + side * 0.15 * r * n + 0.03 * d
        c.tube([p0, p1], 0.01, anat.bright)


def _three_vessel_line(anat: SubjectAnatomy) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii of pulmonary trunk, aorta and SVC on the left-anterior → right-posterior line."""
    t = anat.three_vessel_angle
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    base = np.array([[0.24, 0.22], [0.02, 0.07], [-0.19, -0.06]], np.float32)
    centres = base @ rot.T + anat.vessel_jitter[:3]
    radii = np.array([0.11, 0.085, 0.06], np.float32) * anat.vessel_scale
    return centres, radii


def _thymus(c: Canvas, anat: SubjectAnatomy) -> None:
    c.ellipse((0.0, 0.5 * anat.thorax_ay), (0.42, 0.2), 0, anat.thymus)


def _three_vessel(c: Canvas, anat: SubjectAnatomy) -> None:
    _thymus(c, anat)
    centres, radii = _three_vessel_line(anat)
    for (x, y), r in zip(centres, radii, strict=True):
        c.ring((x, y), (r + 0.012, r + 0.012), 0, 0.025, anat.bright)
        c.ellipse((x, y), (r, r), 0, FLUID)


def _three_vessel_trachea(c: Canvas, anat: SubjectAnatomy) -> None:
    _thymus(c, anat)
    centres, radii = _three_vessel_line(anat)
    j = anat.vessel_jitter
    desc = np.array([0.13, -0.5 * anat.thorax_ay], np.float32)
    pa, ao, svc = centres
    # Ductal arch (left) and transverse aortic arch converge into a V at the descending aorta.
    duct = bezier(pa + np.array([0.06, 0.04], np.float32), pa + np.array([0.1, -0.3], np.float32), desc, 6)
    arch = bezier(ao + np.array([-0.08, 0.08], np.float32), ao + np.array([-0.08, -0.3], np.float32) + j[4],
                  desc, 6)
    c.vessel(duct, 0.8 * radii[0], 0.022, anat.bright, FLUID)
    c.vessel(arch, 0.85 * radii[1], 0.022, anat.bright, FLUID)
    trachea = np.array([-0.17, -0.3], np.float32) + j[5]
    c.ring(trachea, (0.075, 0.075), 0, 0.04, anat.bright * 1.3)
    c.ellipse(trachea, (0.055, 0.055), 0, FLUID * 2)
    svc_p = svc + np.array([-0.12, 0.0], np.float32)
    c.ring(svc_p, (radii[2] + 0.012,) * 2, 0, 0.025, anat.bright)
    c.ellipse(svc_p, (radii[2], radii[2]), 0, FLUID)


def _abdomen(c: Canvas, anat: SubjectAnatomy) -> None:
    """Upper abdomen (the "other" class): liver, stomach bubble, umbilical vein, no heart."""
    j = anat.vessel_jitter
    c.ellipse((0.38 + j[0][0], 0.05 + j[0][1]), (0.26, 0.16), 0.4, FLUID)  # stomach
    c.vessel(bezier((-0.02, 0.85 * anat.thorax_ay), (-0.2, 0.4), (-0.06, 0.02) + j[1]), 0.045, 0.015,
             anat.bright * 0.7, FLUID)  # umbilical vein → portal sinus
    ay = anat.thorax_ay
    c.ellipse((-0.14, -0.5 * ay), (0.055, 0.055), 0, FLUID)  # IVC
    c.ring((0.12, -0.56 * ay), (0.055, 0.055), 0, 0.02, anat.bright)
    c.ellipse((0.12, -0.56 * ay), (0.045, 0.045), 0, FLUID)  # aorta
