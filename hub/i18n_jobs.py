"""English and Simplified Chinese for grading jobs on the instructor dashboard.

Kept beside :mod:`hub.i18n` (which merges it into its catalog) so the grading messages change
in one place.
"""

# Chinese text is written with Chinese (full-width) punctuation, as it should be.
# ruff: noqa: RUF001

from __future__ import annotations

JOB_MESSAGES: dict[str, dict[str, str]] = {
    "grading_title": {"en": "Grading", "zh-CN": "评分"},
    "grading_intro": {
        "en": "Each button queues a job; the grading worker runs one job per course at a time. "
        "Progress shows below, also after you reload the page.",
        "zh-CN": "每个按钮都会排入一个任务；评分进程每门课程同一时间只运行一个任务。"
        "进度显示在下方，刷新页面后仍然可见。",
    },
    "job_kind_release": {"en": "Release", "zh-CN": "发布"},
    "job_kind_collect": {"en": "Collect", "zh-CN": "收取"},
    "job_kind_autograde": {"en": "Autograde", "zh-CN": "自动评分"},
    "job_kind_regrade-one": {"en": "Regrade one learner", "zh-CN": "重新评分（单个学员）"},
    "job_kind_feedback": {"en": "Release feedback", "zh-CN": "发布反馈"},
    "job_kind_export": {"en": "Export grades", "zh-CN": "导出成绩"},
    "job_kind_extend": {"en": "Extension", "zh-CN": "延期"},
    "job_release_force": {"en": "replace an earlier release", "zh-CN": "替换之前的发布"},
    "job_autograde_new": {"en": "Autograde new or changed", "zh-CN": "评分新增或修改的提交"},
    "job_autograde_all": {"en": "Autograde all", "zh-CN": "全部重新评分"},
    "job_student": {"en": "Learner", "zh-CN": "学员"},
    "job_hours": {"en": "Extra hours (0 removes)", "zh-CN": "延长小时数（0 表示取消）"},
    "job_grant_extension": {"en": "Grant extension", "zh-CN": "授予延期"},
    "jobs_title": {"en": "Grading jobs", "zh-CN": "评分任务"},
    "jobs_none": {"en": "No grading jobs yet.", "zh-CN": "还没有评分任务。"},
    "job_col_job": {"en": "Job", "zh-CN": "任务"},
    "job_col_state": {"en": "State", "zh-CN": "状态"},
    "job_col_by": {"en": "Asked by", "zh-CN": "发起人"},
    "job_col_result": {"en": "Result", "zh-CN": "结果"},
    "job_state_queued": {"en": "queued", "zh-CN": "排队中"},
    "job_state_running": {"en": "running", "zh-CN": "运行中"},
    "job_state_done": {"en": "done", "zh-CN": "已完成"},
    "job_state_failed": {"en": "failed", "zh-CN": "失败"},
    "job_state_interrupted": {"en": "interrupted", "zh-CN": "已中断"},
    "sub_state_queued": {"en": "waiting", "zh-CN": "等待中"},
    "sub_state_graded": {"en": "graded", "zh-CN": "已评分"},
    "sub_state_limit": {"en": "stopped by a limit", "zh-CN": "超出限制而终止"},
    "sub_state_error": {"en": "grading failed", "zh-CN": "评分失败"},
    "sub_state_skipped": {"en": "unchanged, not regraded", "zh-CN": "未修改，未重新评分"},
    "job_download_csv": {"en": "Download CSV", "zh-CN": "下载 CSV"},
    "job_released": {
        "en": "Released: learners can fetch it.",
        "zh-CN": "已发布：学员现在可以获取。",
    },
    "job_collected": {"en": "{count} submissions collected.", "zh-CN": "已收取 {count} 份提交。"},
    "job_graded": {"en": "{count} submissions graded.", "zh-CN": "已评分 {count} 份提交。"},
    "job_feedback": {
        "en": "Feedback released to {count} learners.",
        "zh-CN": "已向 {count} 名学员发布反馈。",
    },
    "job_exported": {"en": "Grades exported.", "zh-CN": "成绩已导出。"},
    "job_extended": {
        "en": "{student} has {hours} extra hours.",
        "zh-CN": "{student} 获得延期 {hours} 小时。",
    },
    "job_attempts": {
        "en": "resumed after its worker stopped (attempt {attempts})",
        "zh-CN": "评分进程中断后已继续（第 {attempts} 次尝试）",
    },
    "job_queued_title": {"en": "Job queued", "zh-CN": "任务已排队"},
    "job_refused_title": {"en": "Job refused", "zh-CN": "任务被拒绝"},
    "job_busy_title": {"en": "A job is running", "zh-CN": "已有任务在运行"},
    "job_busy": {
        "en": "{course} already has grading job #{job_id} ({job_kind} {assignment}, {job_state}). "
        "Wait until it ends, then ask again.",
        "zh-CN": "{course} 已有评分任务 #{job_id}（{job_kind} {assignment}，{job_state}）。"
        "请等它结束后再试。",
    },
    "job_unknown_course": {
        "en": "There is no course {course}.",
        "zh-CN": "没有名为 {course} 的课程。",
    },
    "job_unknown_kind": {
        "en": "Unknown job {job_kind}: use one of {kinds}.",
        "zh-CN": "未知的任务 {job_kind}：请使用 {kinds} 之一。",
    },
    "job_unknown_assignment": {
        "en": "This course has no assignment {assignment} in course.yaml (known: {known}).",
        "zh-CN": "本课程的 course.yaml 中没有作业 {assignment}（已有：{known}）。",
    },
    "job_bad_args": {
        "en": "A {job_kind} job takes only these options: {allowed}.",
        "zh-CN": "{job_kind} 任务只接受以下选项：{allowed}。",
    },
    "job_missing_args": {
        "en": "A {job_kind} job needs: {missing}.",
        "zh-CN": "{job_kind} 任务需要：{missing}。",
    },
    "job_bad_student": {
        "en": "{student} is not a learner's name: letters, digits and . _ @ + - only.",
        "zh-CN": "{student} 不是有效的学员名：只能包含字母、数字和 . _ @ + -。",
    },
    "job_bad_hours": {
        "en": "Extra hours must be a number from 0 to {maximum}.",
        "zh-CN": "延长小时数必须是 0 到 {maximum} 之间的数字。",
    },
    "job_forbidden": {
        "en": "Only the instructors of this course may run or see its grading.",
        "zh-CN": "只有本课程的讲师可以运行或查看评分。",
    },
    "job_no_result": {
        "en": "That job has no export to download.",
        "zh-CN": "该任务没有可下载的导出文件。",
    },
}
