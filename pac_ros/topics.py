"""Default topic names of the robot's interface (docs/design.md, section 3); ROS-free, so the
dataset's MCAP export and the nodes share them. Every node takes them as parameters."""
CAMERA_TOPIC = "/camera/{name}/image_raw"
JOINT_STATES = "/joint_states"
INSTRUCTION = "/instruction"
COMMANDS = "/arm_controller/commands"  # std_msgs/Float64MultiArray: forward_command_controller
TRAJECTORY = "/arm_controller/joint_trajectory"  # trajectory_msgs/JointTrajectory: joint_trajectory_controller
REWARD = "/reward"
SUCCESS = "/task_success"
BLOCK_POSES = "/sim/block_poses"
STATUS = "/pac/status"
DIAGNOSTICS = "/diagnostics"  # diagnostic_msgs/DiagnosticArray, what rqt_robot_monitor and the aggregator read
EPISODE_EVENTS = "/pac/episode_events"
STAMPED_COMMAND = "~/command"  # sensor_msgs/JointState: stamp = the observation's stamp
CAMERA_FRAME = "{name}_camera_optical_frame"  # header.frame_id of a camera's images and CameraInfo


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic next to an image topic (image_transport's convention):
    ``/camera/front/image_raw`` -> ``/camera/front/camera_info``."""
    head, _, _ = image_topic.rpartition("/")
    return f"{head}/camera_info" if head else "camera_info"
