"""The Slack app: analysts ask in Slack, policy owners approve or reject there, under the same rules as the API.

``app.build_slack_app`` builds the slack-bolt ``App`` over a Runtime; ``integrations.api.routes.slack`` mounts
it at ``POST /slack/events``. Text from Slack is data: it is handed to the agent as a question and never
read as an instruction to create or approve anything; only button clicks and modal submissions by mapped,
entitled principals draft or decide proposals, through the same tools and approval rules as every channel.
"""
