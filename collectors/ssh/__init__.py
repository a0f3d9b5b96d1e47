"""Agentless host collectors over SSH (paramiko): ``linux`` (collectors.ssh.linux), ``hyperv``
(collectors.ssh.hyperv) and ``windows`` (collectors.ssh.windows), three plugins over one transport
(collectors.ssh.client), one host-key policy and one run of checks (collectors.ssh.host). See
README.md beside this file.
"""
