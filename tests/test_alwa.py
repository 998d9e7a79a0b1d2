from __future__ import annotations

import math
import statistics

import pytest
import torch

from awing.losses.alwa import ALWA


def cls_sequence(n: int) -> list[float]:
    """A classification loss whose fluctuation grows, so that the rule fires in many windows."""
    return [1.0 + 0.2 * 1.6 ** (i / 10) * math.sin(1.7 * i) for i in range(n)]


def reg_sequence(n: int) -> list[float]:
    return [1.0 - 0.004 * i + 0.3 * math.cos(0.9 * i) for i in range(n)]


class TestALWA:
    def test_hand_computed_window(self):
        alwa = ALWA(interval=3)
        assert [alwa.step(c, r) for c, r in [(3.0, 1.0), (1.0, 1.5), (2.0, 2.0)]] == [False, False, True]
        # T_cls = stdev(3, 1, 2) = 1, T_reg = stdev(1, 1.5, 2) = 0.5 -> w_cls = 0.5
        assert alwa.cls_weight == pytest.approx(0.5)
        assert alwa.cls_history == [] and alwa.reg_history == [] and alwa.iteration == 3
        # the next window records weighted losses: 0.5 * (4, 2, 3) -> stdev 0.5 = T_reg (0.5): no change
        for c, r in [(4.0, 1.0), (2.0, 1.5), (3.0, 2.0)]:
            alwa.step(c, r)
        assert alwa.cls_weight == pytest.approx(0.5)
        assert alwa.reg_weight == 1.0

    @pytest.mark.parametrize("statistic", ["std", "mean_std"])
    @pytest.mark.parametrize("weighted", [True, False])
    def test_trajectory_follows_the_rule(self, statistic, weighted):
        interval, n = 10, 60
        cls, reg = cls_sequence(n), reg_sequence(n)
        alwa = ALWA(interval=interval, statistic=statistic, weighted=weighted)
        w, window_c, window_r, expected, updates = 1.0, [], [], [], []
        for i in range(n):
            window_c.append(cls[i] * w if weighted else cls[i])
            window_r.append(reg[i])
            if len(window_c) == interval:
                t_c, t_r = statistics.stdev(window_c), statistics.stdev(window_r)
                if statistic == "mean_std":
                    t_c, t_r = t_c + statistics.mean(window_c), t_r + statistics.mean(window_r)
                if t_c > t_r:
                    w = 1 - (t_c - t_r) / t_c
                window_c, window_r = [], []
                updates.append(i)
            expected.append(w)
        got, closed = [], []
        for i in range(n):
            if alwa.step(torch.tensor(cls[i]), reg[i]):
                closed.append(i)
            got.append(alwa.cls_weight)
        assert closed == updates == list(range(interval - 1, n, interval))
        assert got == pytest.approx(expected, rel=1e-6)
        assert len({round(v, 9) for v in got}) >= 5  # the weight really moved several times

    def test_no_update_when_regression_varies_more(self):
        alwa = ALWA(interval=4)
        for c, r in zip([1.0, 1.1, 0.9, 1.0], [1.0, 3.0, 0.0, 2.0], strict=True):
            alwa.step(c, r)
        assert alwa.cls_weight == 1.0

    def test_state_dict_round_trip_mid_window(self, tmp_path):
        cls, reg = cls_sequence(45), reg_sequence(45)
        a = ALWA(interval=10)
        for i in range(25):
            a.step(cls[i], reg[i])
        torch.save({"alwa": a.state_dict()}, tmp_path / "ckpt.pt")
        b = ALWA(interval=10)
        b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["alwa"])
        assert b.state_dict() == a.state_dict()
        for i in range(25, 45):
            a.step(cls[i], reg[i])
            b.step(cls[i], reg[i])
            assert a.cls_weight == b.cls_weight
        assert a.log_values() == {"alwa/cls_weight": a.cls_weight, "alwa/reg_weight": 1.0}
        assert "interval=10" in repr(a)

    def test_statistics_use_detached_scalars(self):
        x = torch.tensor(2.0, requires_grad=True)
        alwa = ALWA(interval=2)
        alwa.step(x * 3, x)
        assert isinstance(alwa.cls_history[0], float) and alwa.cls_history[0] == 6.0

    def test_errors(self):
        with pytest.raises(ValueError, match="interval"):
            ALWA(interval=1)
        with pytest.raises(ValueError, match="statistic"):
            ALWA(statistic="var")
        with pytest.raises(ValueError, match="cls_weight"):
            ALWA(cls_weight=-1)
        alwa = ALWA(interval=5)
        with pytest.raises(ValueError, match="finite"):
            alwa.step(float("nan"), 1.0)
        with pytest.raises(ValueError, match="scalar"):
            alwa.step(torch.ones(2), 1.0)
        with pytest.raises(TypeError, match="reg_loss"):
            alwa.step(1.0, "1.0")
        with pytest.raises(ValueError, match="interval=7"):
            alwa.load_state_dict(ALWA(interval=7).state_dict())
        with pytest.raises(ValueError, match="keys"):
            alwa.load_state_dict({"cls_weight": 0.5})
