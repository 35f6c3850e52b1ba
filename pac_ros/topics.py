"""Default topic names of the robot's interface (docs/design.md, section 3); ROS-free, so the
dataset's MCAP export and the nodes share them. Every node takes them as parameters."""
CAMERA_TOPIC = "/camera/{name}/image_raw"
JOINT_STATES = "/joint_states"
INSTRUCTION = "/instruction"
COMMANDS = "/arm_controller/commands"
REWARD = "/reward"
SUCCESS = "/task_success"
BLOCK_POSES = "/sim/block_poses"
STATUS = "/pac/status"
EPISODE_EVENTS = "/pac/episode_events"
STAMPED_COMMAND = "~/command"  # sensor_msgs/JointState: stamp = the observation's stamp
