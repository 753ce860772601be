#!/bin/bash
# Source ROS 2 Jazzy and the rlcg workspace, then run the command.
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"
