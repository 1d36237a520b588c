"""Draw docs/img/method.png, the README's figure: one weight matrix in b x b blocks after three tasks
(unique blocks per task, shared blocks anchored) and the gate routing a prompt to one expert.

    python scripts/method_figure.py            # -> docs/img/method.png
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "method.png"
COLOURS = {1: "#4C72B0", 2: "#DD8452", 3: "#55A868", "shared": "#8172B3"}
# (row, col) -> owners, on an 6 x 8 grid of blocks: what Split-on-Share leaves after three tasks
OWNERS = {(0, 1): {1}, (1, 4): {1}, (3, 6): {1}, (2, 2): {1, 2}, (4, 5): {1, 2, 3},
          (0, 6): {2}, (5, 1): {2}, (1, 0): {3}, (3, 3): {3}, (5, 7): {2, 3}}


def main() -> None:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for r in range(6):
        for c in range(8):
            owners = OWNERS.get((r, c), set())
            colour = "white" if not owners else COLOURS["shared"] if len(owners) > 1 else COLOURS[next(iter(owners))]
            ax.add_patch(Rectangle((c, 5 - r), 1, 1, facecolor=colour, edgecolor="#999999", lw=0.8))
            if len(owners) > 1:
                ax.text(c + 0.5, 5.5 - r, "⚓" + "".join(map(str, sorted(owners))), ha="center", va="center",
                        fontsize=7, color="white")
    ax.text(4, 6.35, "a target weight W in b×b blocks (frozen)", ha="center", fontsize=9)
    for i, (key, label) in enumerate([(1, "unique: task 1"), (2, "unique: task 2"), (3, "unique: task 3"),
                                      ("shared", "shared, anchored (λ·owners)")]):
        ax.add_patch(Rectangle((0.0 + 3.3 * i, -1.05), 0.35, 0.35, facecolor=COLOURS[key], edgecolor="#999999"))
        ax.text(0.45 + 3.3 * i, -0.87, label, va="center", fontsize=7.5)
    ax.add_patch(Rectangle((10, 2.2), 2.2, 1.6, facecolor="#F2F2F2", edgecolor="#555555"))
    ax.text(11.1, 3.0, "gate\n(z → task)", ha="center", va="center", fontsize=9)
    ax.text(15.0, 3.0, "prompt x\nz = mean of the\nbase's last hidden\nstate (no expert)", ha="center", va="center",
            fontsize=8)
    ax.add_patch(FancyArrowPatch((13.7, 3.0), (12.3, 3.0), arrowstyle="->", mutation_scale=12))
    ax.add_patch(FancyArrowPatch((9.9, 3.0), (8.2, 3.0), arrowstyle="->", mutation_scale=12))
    ax.text(9.05, 3.35, "top-1: S_ĵ", ha="center", fontsize=8)
    ax.text(11.1, 1.5, "far from every task:\nnull expert (base alone)", ha="center", va="top", fontsize=7.5)
    ax.text(4, -1.75, "task t: probe sensitivity → top-k blocks, bonus β for owned ones (Split-on-Share)",
            ha="center", fontsize=8.5)
    ax.set_xlim(-0.2, 16.6)
    ax.set_ylim(-2.0, 6.7)
    ax.set_aspect("equal")
    ax.axis("off")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
