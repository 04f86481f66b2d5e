"""The coordinators' dashboard: server-rendered pages under /dashboard on the notifications app."""
