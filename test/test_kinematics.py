"""The arm's kinematics from its MJCF alone: the values the deployed policy and the sim's expert share."""
import numpy as np
import pytest

from pac_ros.control import Control
from pac_ros.kinematics import GripKinematics, default_model_path
from pac_ros.model.config import preset
from pac_ros.spec import default_spec

SPEC = default_spec()

# Computed by the earlier path (GripKinematics on a whole StackingEnv, as Control built it):
# arm joints, grip position, hand yaw, IK target, target yaw, IK solution (20 iterations).
STORED = [
    ([0.00036904600724477226, 0.19042366125254095, 1.8720586433913347, 0.8193224483728178, -0.13640123555151676,
      -0.2974939664989387], [0.431465754307261, 0.017156564952957816, 0.24986001061718982], -2.8335060380189474,
     [0.4326686263592097, 0.043960869864048485, 0.24001588024616322], -2.8955535280009412,
     [0.10125731237886877, 0.30891089843703784, 1.7240190152774078, 1.108662409438764, 1.0223612093383371e-07,
      -0.14478160872923534]),
    ([0.14695261505555945, 0.20786610244801823, 1.9859242746993695, 0.8073595865875387, -0.008775546738982046,
      0.20859095833748634], [0.3882990671241319, 0.05858477310849574, 0.20400138951679342], 3.0780021732496925,
     [0.36141477617843026, 0.04943245788769138, 0.16597693472077654], 2.949048399271195,
     [0.13595312530847894, 0.2663341015288745, 2.0401941508011787, 0.8350496777250188, 7.832646805405394e-06,
      0.328501832075396]),
    ([-0.5525205113375197, 0.030272660677595625, 1.574066055566889, 1.1678793076465104, 0.047025325987267545,
      -0.056079283388986316], [0.3617860468988252, -0.22997267731000742, 0.41568559608706257], 2.6490704480416674,
     [0.31145085268241496, -0.24074653522694014, 0.4147155771790411], 2.660401346641998,
     [-0.6580491158754278, 0.109359877504155, 1.4554156677447458, 1.5768177393199985, -5.13639750290883e-08,
      -0.17685783075996797]),
    ([-0.459040729651618, -0.04252598281017919, 1.660744276583008, 0.8438488281723202, 0.3182695870158236,
      -0.24226040259956894], [0.3815245694757165, -0.23220262177601708, 0.44402401207314146], 2.959251529887049,
     [0.3808741353768061, -0.2145148244283536, 0.4323520034182754], 2.948081334928633,
     [-0.5129227879833748, 0.22221529459661044, 1.2708865194375987, 1.6484844971627797, 3.677351341229221e-06,
      -0.3194105025519628]),
]


@pytest.mark.parametrize("q, grip, yaw, target, target_yaw, solution", STORED)
def test_fk_and_ik_match_the_values_of_the_whole_task_path(q, grip, yaw, target, target_yaw, solution):
    kin = GripKinematics.from_mjcf(SPEC)
    got_grip, got_yaw = kin.fk(np.array(q))
    np.testing.assert_array_equal(got_grip, grip)  # forward kinematics reads the arm's joints only: exact
    assert got_yaw == yaw
    # IK's Jacobians also see the fingers' mass through MuJoCo's centre-of-mass frame: equal to roundoff
    np.testing.assert_allclose(kin.ik(np.array(q), np.array(target), target_yaw, iterations=20), solution,
                               rtol=0, atol=1e-12)


def test_control_and_sim_use_the_same_kinematics(env):
    control = Control(preset("tiny", obs_mode="features", control="task"), SPEC)
    assert type(control.kinematics) is type(env.kinematics) is GripKinematics
    rng = np.random.default_rng(3)
    for q in rng.uniform(SPEC.lower, SPEC.upper, size=(5, SPEC.action_dim)):
        (p_ctl, y_ctl), (p_env, y_env) = control.kinematics.fk(q), env.kinematics.fk(q)
        np.testing.assert_array_equal(p_ctl, p_env)
        assert y_ctl == y_env
        env.set_joint_positions(q)
        np.testing.assert_array_equal(env.grip_position(), p_env)  # the live sim puts the site where fk says


def test_an_mjcf_without_the_grip_site_is_named(tmp_path):
    bad = tmp_path / "arm.xml"
    bad.write_text(default_model_path().read_text().replace('<site name="grip"', '<site name="tool"'))
    with pytest.raises(ValueError, match=r"arm\.xml: no site named 'grip'"):
        GripKinematics.from_mjcf(SPEC, bad)
