import sys

from pac_ros.cli import main

sys.exit(main())
