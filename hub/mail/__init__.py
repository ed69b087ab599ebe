"""LearnHub's mail: signed links, the outbox, the wording, and the notices.

| module | what it owns |
|---|---|
| :mod:`hub.mail.tokens` | signed, expiring tokens for links (verify, reset, unsubscribe) |
| :mod:`hub.mail.members` | a member's address (counted once verified), language, opt-outs |
| :mod:`hub.mail.outbox` | queueing a mail in the database (the only way mail is sent) |
| :mod:`hub.mail.compose` | the words of each mail, plain text and HTML, in en or zh-CN |
| :mod:`hub.mail.sender` | the service's sender: SMTP (aiosmtplib), retries with back-off |
| :mod:`hub.mail.notices` | notice hooks (feedback, answers, announcements, deadlines) |

Every mail goes through the outbox: the Hub (verification, password reset) and the notice
hooks write a row; only the LearnHub service talks to the SMTP server. A mail the server
does not take stays queued and is tried again, so an SMTP outage delays mail but loses none.
"""
