"""Slack's side of approvals: Approve / Deny buttons on a Slack message, answered at our
interactivity endpoint (signed by Slack, verified before anything is parsed), and the
message's buttons replaced by the outcome once the approval is decided anywhere."""
