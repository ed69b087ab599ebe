# nbgrader configuration added for instructors of the course (the spawner puts this folder on
# JUPYTER_CONFIG_PATH only for members of instructors-<course>): the formgrader works on the
# instructors' copy of the course's grading directory, which the spawner mounts at
# /home/jovyan/grading.
c = get_config()  # noqa: F821 - injected by traitlets when it loads this file
c.CourseDirectory.root = "/home/jovyan/grading"
