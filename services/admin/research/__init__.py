"""The research side of the admin service: studies, enrolment, participants and
withdrawal, viewer tokens, daily notices, deletions with signed receipts, and the audit
trail's store."""
