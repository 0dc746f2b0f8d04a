# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mwdeploy_global_optspecs
    string join \n C/config-file= core mediawiki extension= skin= config patch= patch-target= rsync provision l10n versions= servers= rollout force parallel= max-unavailable= stages= failure-budget= on-failure= m/message= dry-run no-log json no-tui exit-when-done metrics-file= h/help V/version
end

function __fish_mwdeploy_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mwdeploy_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mwdeploy_using_subcommand
    set -l cmd (__fish_mwdeploy_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l extension -d 'git pull versions/<v>/extensions/NAME and sync only it (repeatable, or a comma list)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l skin -d 'git pull versions/<v>/skins/NAME and sync only it (repeatable, or a comma list)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l patch -d 'Apply patch P (a file in <prod_path>/scripts/extensions/patches/ on this host) to --patch-target in each selected version (repeatable)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l patch-target -d 'The folder --patch applies to, relative to versions/<v>/ (names separated by \'/\')' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l versions -d 'Versions under staging_path/versions/ that pulls, patches and targeted syncs apply to: a comma list, or all [default: all]' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l servers -d 'Servers to deploy to: a comma list of mw_servers names, or all [default: all]; they are deployed in config order' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l parallel -d 'Servers in flight at once (rollout.parallel); never raises --max-unavailable' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l max-unavailable -d 'Servers out of the pool at once (rollout.max_unavailable)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l stages -d 'Stage sizes, comma-separated: counts, percentages or group:NAME; the last one repeats (e.g. 1,10%,100%) (rollout.stages)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l failure-budget -d 'Failures tolerated before --on-failure decides: a count (2) or a percentage (5%) (rollout.failure_budget)' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l on-failure -d 'What a failure beyond the budget does (rollout.on_failure; --json: abort)' -r -f -a "prompt\t'Ask the operator: yes goes on (and the budget grows by one); no, Esc or a timeout stops'
abort\t'Stop: no new server starts, pending servers are skipped'
continue\t'Never stop for failures'"
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -s m -l message -d 'Why: goes to the journal, the webhooks and the lock' -r
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l metrics-file -d 'Write the deploy\'s metrics (Prometheus text format, for node_exporter\'s textfile collector) to this file; overrides the config\'s `metrics_file`' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l core -d 'git pull the root repository of staging_path; then the whole tree is synced'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l mediawiki -d 'git pull versions/<v> for each selected version (--versions); those folders are synced'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l config -d 'git pull staging_path/config and sync only it'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l rsync -d 'Sync staging as it is, without git pulls: the whole tree'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l provision -d 'Push this host\'s live tree (prod_path) as it is to the servers, e.g. new ones: no pulls, no staging steps'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l l10n -d 'Rebuild the localisation cache (l10n_command) on staging and on each server'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l rollout -d 'Depool each server from every proxy before its update; repool it after its canary'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l force -d 'No prompts; a failed canary is a warning (the server goes back in, counted as warned); no preflight UP check. Never bypasses the lock, name checks or proxies'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l dry-run -d 'Print the plan (what is pulled and synced, the servers, the stages) and stop: nothing is locked, fetched or changed'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l no-log -d 'No webhooks and no log file for this run (the journal is still written)'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l json -d 'One JSON event per line on stdout; no dashboard; prompts answer abort'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l no-tui -d 'Plain lines instead of the dashboard'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -l exit-when-done -d 'Close the dashboard when the deploy ends'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -s V -l version -d 'Print version'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "simulate" -d 'Run the rollout engine on a simulated fleet, in virtual time, and check its rules'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "status" -d 'Pool state of every pooled server on every proxy and backend, and the release each one serves'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "log" -d 'Show a deploy\'s journal: the latest, or the one named; --follow a running one'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "lock" -d 'The deploy lock of the state dir: who holds it; clear a dead holder\'s record'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "releases" -d 'Release layout: the releases on each server with their manifests, and which is live'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "completions" -d 'Print the shell completion script for SHELL'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "rollback" -d 'Make the previous (or a named) release live again (release layout)'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "recover" -d 'Finish what a killed deploy left: every server it left out of the pool is made whole, canaried and repooled'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "pool" -d 'Take a server out of the pool, or put it back, on every proxy and backend'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "check-config" -d 'Check the config and reach every proxy and server'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "demo" -d 'Watch a rolling deploy to a simulated fleet, in real time: nothing real is touched'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "sandbox" -d 'Start a small real fleet on 127.0.0.1 to deploy to, until Ctrl-C'
complete -c mwdeploy -n "__fish_mwdeploy_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l servers -d 'Servers in the simulated fleet (named mw00001, mw00002, ...)' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l seed -d 'Seed of every random choice [default: $MWDEPLOY_SIM_SEED, else derived from the clock; always printed, so the run can be repeated]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l canary-fail-rate -d 'Probability that a server\'s new release is broken: its canary fails' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l transfer-fail-rate -d 'Probability that a copy (or in-place transfer) fails' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l parallel -d 'Servers in flight at once, copies ahead included [default: 1]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l max-unavailable -d 'Servers out of the pool at once; never raised by --parallel [default: 1]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l stages -d 'Stage sizes, comma-separated: counts and percentages; the last one repeats (e.g. 1,10%,100%) [default: 100%]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l failure-budget -d 'Failures tolerated before --on-failure decides: a count (2) or a percentage (5%) [default: 0]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l on-failure -d 'What a failure beyond the budget does (a simulation has no one to prompt)' -r -f -a "abort\t'Stop: no new server starts, pending servers are skipped'
continue\t'Never stop for failures'"
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l layout -d 'How the release reaches a server: release directories, or rsync into the live tree' -r -f -a "releases\t'Release directories: copy ahead while pooled, switch atomically, roll back on failure'
inplace\t'The old tool\'s way: depool, then rsync into the live tree; no rollback'"
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -l json -d 'One JSON object per line: every event, then the simulation_report'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -s q -l quiet -d 'Print only the final report (with --json: only the simulation_report line)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand simulate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand status" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand status" -l json -d 'One JSON object: every pooled server with its state on each proxy and backend, the proxies, drift, releases'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand log" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand log" -l latest -d 'The latest deploy (the default when no ID is given)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand log" -s f -l follow -d 'Keep showing new records as the deploy writes them, until it finishes'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand log" -l json -d 'The journal\'s lines as they are: one JSON object per line'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand log" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and not __fish_seen_subcommand_from status release help" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and not __fish_seen_subcommand_from status release help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and not __fish_seen_subcommand_from status release help" -f -a "status" -d 'Who holds the deploy lock, or that nobody does'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and not __fish_seen_subcommand_from status release help" -f -a "release" -d 'Clear the record of a holder that is gone; refused (exit 3) while it runs'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and not __fish_seen_subcommand_from status release help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from status" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from release" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "status" -d 'Who holds the deploy lock, or that nobody does'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "release" -d 'Clear the record of a holder that is gone; refused (exit 3) while it runs'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand lock; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand releases" -l servers -d 'Servers to show: a comma list of mw_servers names, or all [default: all]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand releases" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand releases" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand completions" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l servers -d 'Servers to roll back: a comma list of mw_servers names, or all [default: all]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l to -d 'The release to make live (`mwdeploy releases` lists them) [default: each server\'s previous release]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l parallel -d 'Servers rolled back at once, out of the pool together [default: rollout.max_unavailable]' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -s m -l message -d 'Why: goes to the journal, the webhooks and the lock' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l fast -d 'Switch without depooling (the switch is atomic): for incidents'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l json -d 'One JSON event per line on stdout; prompts answer abort'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -l no-tui -d 'Plain lines instead of the dashboard (they are the default without a terminal)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand recover" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand recover" -l json -d 'One JSON event per line on stdout'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand recover" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and not __fish_seen_subcommand_from depool repool help" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and not __fish_seen_subcommand_from depool repool help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and not __fish_seen_subcommand_from depool repool help" -f -a "depool" -d 'Take SERVER out of the pool on every proxy and backend'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and not __fish_seen_subcommand_from depool repool help" -f -a "repool" -d 'Put SERVER back into the pool after its canary passes'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and not __fish_seen_subcommand_from depool repool help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from depool" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from depool" -s h -l help -d 'Print help'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from repool" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from repool" -l force -d 'Repool without running the canary first'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from repool" -s h -l help -d 'Print help'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "depool" -d 'Take SERVER out of the pool on every proxy and backend'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "repool" -d 'Put SERVER back into the pool after its canary passes'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand pool; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand check-config" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -l servers -d 'Servers in the simulated fleet, named mw1, mw2, ... (1 to 50)' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -l fail -d 'Break this server\'s new release so its canary fails (e.g. mw2)' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -l layout -d 'How the release reaches a server: release directories, or rsync into the live tree' -r -f -a "releases\t'Release directories: copy ahead while pooled, switch atomically, roll back on failure'
inplace\t'The old tool\'s way: depool, then rsync into the live tree; no rollback'"
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -l json -d 'One JSON event per line on stdout, as a deploy\'s --json (prompts answer no)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -l no-tui -d 'Plain lines instead of the dashboard (they are the default without a terminal)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand sandbox" -l servers -d 'Servers in the fleet, named mw1, mw2, ... (1 to 8)' -r
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand sandbox" -l layout -d 'The release_layout of the config written for it' -r -f -a "releases\t'Release directories: copy ahead while pooled, switch atomically, roll back on failure'
inplace\t'The old tool\'s way: depool, then rsync into the live tree; no rollback'"
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand sandbox" -s C -l config-file -d 'The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml]' -r -F
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand sandbox" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "simulate" -d 'Run the rollout engine on a simulated fleet, in virtual time, and check its rules'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "status" -d 'Pool state of every pooled server on every proxy and backend, and the release each one serves'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "log" -d 'Show a deploy\'s journal: the latest, or the one named; --follow a running one'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "lock" -d 'The deploy lock of the state dir: who holds it; clear a dead holder\'s record'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "releases" -d 'Release layout: the releases on each server with their manifests, and which is live'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "completions" -d 'Print the shell completion script for SHELL'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "rollback" -d 'Make the previous (or a named) release live again (release layout)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "recover" -d 'Finish what a killed deploy left: every server it left out of the pool is made whole, canaried and repooled'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "pool" -d 'Take a server out of the pool, or put it back, on every proxy and backend'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "check-config" -d 'Check the config and reach every proxy and server'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "demo" -d 'Watch a rolling deploy to a simulated fleet, in real time: nothing real is touched'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "sandbox" -d 'Start a small real fleet on 127.0.0.1 to deploy to, until Ctrl-C'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and not __fish_seen_subcommand_from simulate status log lock releases completions rollback recover pool check-config demo sandbox help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "status" -d 'Who holds the deploy lock, or that nobody does'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and __fish_seen_subcommand_from lock" -f -a "release" -d 'Clear the record of a holder that is gone; refused (exit 3) while it runs'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "depool" -d 'Take SERVER out of the pool on every proxy and backend'
complete -c mwdeploy -n "__fish_mwdeploy_using_subcommand help; and __fish_seen_subcommand_from pool" -f -a "repool" -d 'Put SERVER back into the pool after its canary passes'
