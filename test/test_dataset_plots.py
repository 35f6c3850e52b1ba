"""`pac-ros dataset plot | video`: the pictures are written and show what they claim."""
from PIL import Image

from pac_ros.cli import main
from pac_ros.data import Dataset
from pac_ros.data.plots import episode_frames


def test_plot_writes_the_four_pngs(collected, tmp_path, capsys):
    assert main(["dataset", "plot", str(collected), "--out", str(tmp_path / "p"), "--episode", "1"]) == 0
    names = {"success_by_source.png", "lengths.png", "returns.png", "joints_episode_1.png"}
    assert {p.name for p in (tmp_path / "p").iterdir()} == names
    for name in names:
        with Image.open(tmp_path / "p" / name) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 200
    assert main(["dataset", "plot", str(collected), "--out", str(tmp_path / "q"), "--episode", "99"]) == 2
    assert "episode" in capsys.readouterr().err


def test_video_has_a_frame_per_row_with_the_text_band(collected, tmp_path):
    ds = Dataset(collected)
    frames = episode_frames(ds, 2)
    assert len(frames) == ds.episodes[2]["length"]
    # two 64x64 cameras side by side, scaled x4, under a 30-pixel text band
    assert frames[0].shape == (30 + 256, 2 * 256, 3) and frames[0][:30].any()
    out = tmp_path / "e.gif"
    assert main(["dataset", "video", str(collected), "--episode", "2", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == len(frames)
