-- exec-monitor's built-in rules (Falco-style conditions, written as Lua data
-- and functions). A team adds or replaces them with its own file, same shape:
--   perf_manual exec-monitor --rules team_rules.lua [--no-default-rules]
--
-- A rule:
--   name     what the alert is called
--   on       'exec' | 'open' | 'connect'
--   priority 'critical' | 'warning' | 'notice' | 'info'
--   paths    path prefixes (exec: the program, open: the file); for open
--            rules they are also what the kernel side watches
--   match    { field = pattern or { patterns } }: every field matches one (Lua patterns, anchored by you)
--   unless   { field = pattern or { patterns } }: no field matches any
--   when     function(e) -> true to alert (after the above)
--   output   the alert text; {field} is replaced by the event's field
-- Event fields: kind, pid, tid, ppid, uid, comm, parent_comm, path, args
-- (exec, a list; {cmdline} is them joined), flags (open), family, daddr,
-- dport (connect).
local SERVICES = { '^nginx$', '^httpd$', '^apache2$', '^postgres$', '^mysqld$', '^mariadbd$', '^redis%-server$',
  '^java$', '^node$', '^php%-fpm', '^uwsgi$', '^gunicorn$', '^containerd%-shim' }

return {
  { name = 'sensitive file opened', on = 'open', priority = 'warning',
    paths = { '/etc/shadow', '/etc/gshadow', '/etc/sudoers', '/root/.ssh/', '/etc/ssh/ssh_host_', '/proc/kcore' },
    unless = { comm = { '^sshd$', '^sudo$', '^su$', '^passwd$', '^unix_chkpwd$', '^chage$', '^useradd$', '^usermod$',
      '^login$', '^cron$', '^systemd' } },
    output = '{comm} (pid {pid}, uid {uid}, parent {parent_comm}) opened {path}' },

  { name = 'shell started by a service', on = 'exec', priority = 'warning',
    paths = { '/bin/sh', '/bin/bash', '/bin/dash', '/bin/zsh', '/usr/bin/sh', '/usr/bin/bash', '/usr/bin/dash',
      '/usr/bin/zsh' },
    match = { parent_comm = SERVICES },
    output = '{parent_comm} (pid {ppid}) started a shell: {cmdline}' },

  { name = 'program run from a temporary directory', on = 'exec', priority = 'warning',
    paths = { '/tmp/', '/var/tmp/', '/dev/shm/' },
    output = '{cmdline} (pid {pid}, uid {uid}) runs from a temporary directory, started by {parent_comm}' },

  { name = 'outbound connection to an unusual port', on = 'connect', priority = 'notice',
    unless = { daddr = { '^127%.', '^::1$', '^0:0:0:0:0:0:0:1$' } },
    when = function(e)
      local usual = { [53] = true, [80] = true, [123] = true, [443] = true }
      return not usual[e.dport]
    end,
    output = '{comm} (pid {pid}) connects to {daddr}:{dport}' },
}
