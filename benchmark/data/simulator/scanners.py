"""Simulated ultrasound machines: what differs between scanners, as ranges a clip's settings are drawn from.

With the knob `scanners=1` (the default) every downstream subject is imaged by `GENERIC`, the broad
mix of settings the simulator has always drawn (its draws, and so its images, are unchanged). With
`scanners=N` (2..4) the downstream subjects are spread over the first N of `MACHINES`, subject k on
machine k mod N (scanner and subject are nested, as in real data), and each machine has its own
narrow ranges: sector opening and apex (the shape of the fan), time-gain compensation and dynamic
range (the gain curve over depth), a display gamma, an overall gain, the speckle grain (the
point-spread function's size) and its on-screen overlays. The anatomy, the poses and the planes are
those of the subject, whatever the machine, so a plane stays a plane: only the scanner's look moves.
"""
from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class ScannerProfile:
    name: str
    half_angle_deg: Range  # sector half-opening
    apex_y: Range  # the fan's apex, above the top edge (image units); far above = a flat-topped fan
    tgc_ratio: Range  # fraction of the depth attenuation the TGC compensates: low = dark far field
    dynamic_range: Range  # dB between black and white: low = contrasty, high = washed out
    gamma: float = 1.0  # display map exponent on the compressed image: > 1 darkens the mid-greys
    gain_db: float = 0.0  # overall gain offset
    speckle_grain: float = 1.0  # point-spread function size (1 = the generic probe's)
    overlay: int = 0  # on-screen layout (render._overlay): text corner, depth marks, grey bar


# The simulator's own mix (its draws before machines existed): every downstream image of `scanners=1`.
GENERIC = ScannerProfile("generic", half_angle_deg=(32, 42), apex_y=(-0.06, -0.01), tgc_ratio=(0.5, 0.9),
                         dynamic_range=(50, 60))

MACHINES = (
    # A wide curvilinear fan, fine speckle, text top left, depth marks on the right.
    ScannerProfile("convex-wide", half_angle_deg=(41, 44), apex_y=(-0.03, -0.01), tgc_ratio=(0.65, 0.8),
                   dynamic_range=(55, 60), speckle_grain=0.8, overlay=0),
    # A narrow phased-array sector from a point apex, coarse speckle, dark far field, contrasty display,
    # text top right and depth marks on the left.
    ScannerProfile("phased-narrow", half_angle_deg=(27, 30), apex_y=(-0.012, -0.004), tgc_ratio=(0.3, 0.45),
                   dynamic_range=(44, 48), gain_db=2.0, speckle_grain=1.6, overlay=1),
    # A flat-topped fan (apex far above the image), bright far field, washed-out display, text at the
    # bottom left and a grey bar at the right edge.
    ScannerProfile("convex-flat", half_angle_deg=(23, 26), apex_y=(-0.3, -0.26), tgc_ratio=(0.9, 1.0),
                   dynamic_range=(63, 68), gamma=0.8, gain_db=-2.0, speckle_grain=1.0, overlay=2),
    # A mid-width fan, darker mid-greys, grainy speckle, text in both top corners, marks on both sides.
    ScannerProfile("compact-dark", half_angle_deg=(34, 37), apex_y=(-0.085, -0.065), tgc_ratio=(0.6, 0.75),
                   dynamic_range=(50, 54), gamma=1.25, gain_db=-1.0, speckle_grain=1.3, overlay=3),
)


def scanner_of(subject: int, scanners: int) -> ScannerProfile:
    """The machine that images downstream subject `subject` when the images are spread over `scanners`."""
    return GENERIC if scanners <= 1 else MACHINES[subject % scanners]
