"""Topic names, frame ids and message types of rlcg episodes in rosbag2 files.

The recorder (``rlcg.data.recorder``), the ingest (``rlcg.data.dataset``) and the ROS 2 nodes all
import these names, so a bag recorded on a robot and one written by ``rlcg collect`` look alike.
See docs/data-format.md.
"""

from __future__ import annotations

# Frames. The robot base frame is the iiwa's first link (urdf/rlcg_iiwa.urdf.xacro); the camera
# frame is the optical frame of the over-the-shoulder camera (config/camera.yaml).
WORLD_FRAME = "world"
BASE_FRAME = "lbr_link_0"
CAMERA_FRAME = "camera_optical_frame"

# Topics.
IMAGE = "/rlcg/camera/image_raw"  # the camera image before each grasp attempt (rgb8)
NEXT_IMAGE = "/rlcg/camera/image_after"  # the image after the attempt, robot back home (rgb8)
CAMERA_INFO = "/rlcg/camera/camera_info"
GRASP_POSE = "/rlcg/grasp/pose"  # the action: x, y in the base frame, yaw about z, z = z_offset
OUTCOME = "/rlcg/grasp/outcome"  # reward, done, success ... of the attempt; closes the step
EPISODE = "/rlcg/episode"  # episode metadata (objects, bins mode ...), first message of an episode
TF = "/tf"  # world -> robot base pose, once per episode
TF_STATIC = "/tf_static"  # base -> camera optical frame is not recorded: it comes from the URDF

TOPIC_TYPES: dict[str, str] = {
    EPISODE: "rlcg_interfaces/msg/EpisodeInfo",
    TF: "tf2_msgs/msg/TFMessage",
    CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    IMAGE: "sensor_msgs/msg/Image",
    GRASP_POSE: "geometry_msgs/msg/PoseStamped",
    NEXT_IMAGE: "sensor_msgs/msg/Image",
    OUTCOME: "rlcg_interfaces/msg/GraspOutcome",
}

# Topics every complete episode has; an episode missing one of them is skipped at ingest.
REQUIRED_TOPICS: tuple[str, ...] = (IMAGE, NEXT_IMAGE, GRASP_POSE, OUTCOME)

ACTION_NAME = "/rlcg/execute_grasp"  # rlcg_interfaces/action/ExecuteGrasp server of the robot driver
