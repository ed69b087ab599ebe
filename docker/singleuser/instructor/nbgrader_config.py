# nbgrader configuration added for instructors of the course (the spawner puts this folder on
# JUPYTER_CONFIG_PATH only for members of instructors-<course>): the formgrader works on the
# instructors' copy of the course's grading directory, which the spawner mounts at
# /home/jovyan/grading.
#
# Submissions are code written by strangers. They run only in LearnHub's sandbox, started by
# `learnhub grader autograde` on the host; never here, where the instructor's Hub token lives.
# So nbgrader's Autograde (the formgrader's "Autograde" button, `nbgrader autograde`) refuses
# before it touches a notebook, and nbgrader's Execute is in none of its steps. And the
# notebooks the formgrader shows are rendered without anything that could run as a script in
# the instructor's browser (see docs/security.md, "Grading data and instructor servers").
from nbconvert.filters import clean_html, markdown2html
from nbconvert.preprocessors import Preprocessor
from nbgrader.apps.api import NbGraderAPI
from traitlets import Bool

c = get_config()  # noqa: F821 - injected by traitlets when it loads this file
c.CourseDirectory.root = "/home/jovyan/grading"

AUTOGRADE_REFUSED = (
    "Autograde is disabled in course servers: submissions run only in LearnHub's sandbox. "
    "Ask the operator to run `learnhub grader autograde COURSE ASSIGNMENT` on the LearnHub host; "
    "the grades appear here afterwards."
)


class RefuseAutograde(Preprocessor):
    """Stands in for every step of nbgrader's Autograde here, so it stops at the first."""

    # nbconvert skips a preprocessor that is not enabled, and nbgrader registers its steps
    # without enabling them (its own preprocessors are enabled by default).
    enabled = Bool(True)

    def preprocess(self, nb, resources):  # type: ignore[no-untyped-def]
        raise RuntimeError(AUTOGRADE_REFUSED)


class SanitizeCells(Preprocessor):
    """Markdown and raw cells as sanitised HTML, for pages shown to instructors.

    nbgrader's formgrade template renders markdown with `markdown2html` and no sanitiser (it
    replaces the block that honours `sanitize_html`), so a `<script>` in a learner's markdown
    cell would run in the instructor's server origin. The sanitised HTML passes unchanged
    through the template's own markdown rendering.
    """

    enabled = Bool(True)

    def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
        if cell.cell_type == "markdown":
            cell.source = clean_html(markdown2html(cell.source))
            cell.pop("attachments", None)
        elif cell.cell_type == "raw":
            cell.source = clean_html(cell.source)
        return cell, resources


def refuse_autograde(self, assignment_id, student_id, force=True, create=True):  # type: ignore[no-untyped-def]
    """The formgrader's Autograde button: refuse before nbgrader touches the gradebook (a
    failed nbgrader Autograde removes the student's submission from it)."""
    return {"success": False, "error": AUTOGRADE_REFUSED, "log": AUTOGRADE_REFUSED}


# This file runs in the instructor's server process (the formgrader loads it at every call),
# so the button's API method is replaced there; the preprocessors below stop any other way in
# (`nbgrader autograde` in a terminal).
NbGraderAPI.autograde = refuse_autograde
c.Autograde.sanitize_preprocessors = [RefuseAutograde]
c.Autograde.autograde_preprocessors = [RefuseAutograde]
# Outputs: nbconvert drops scripts and sanitises HTML, SVG and markdown outputs.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.preprocessors = [SanitizeCells]
