# Prints, as JSON, the configuration Vagrant itself builds from a project's Vagrantfile for one
# provider, with that provider's overrides applied: what `vagrant up --provider=PROVIDER` would use.
# Runs on a host without that provider (no VirtualBox here), since nothing is booted.
#
#   ruby vagrant_config.rb PROJECT_DIR PROVIDER [SHOWVMINFO_FILE]
#
# With SHOWVMINFO_FILE (a recorded `VBoxManage showvminfo --machinereadable` of an imported box),
# it also builds VirtualBox's real boot sequence with the action hooks the Vagrantfile registered,
# and runs the data-disk step found there against that recording: VBoxManage cannot run here, so a
# stand-in driver answers showvminfo from the file and records every other command.
require "json"
require "vagrant"
begin
  require "vagrant-libvirt"
rescue LoadError
  nil # Only the libvirt provider's settings need it.
end

project_dir, provider, showvminfo = ARGV.fetch(0), ARGV.fetch(1).to_sym, ARGV[2]
env = Vagrant::Environment.new(cwd: project_dir, ui_class: Vagrant::UI::Silent)
loaded = env.vagrantfile.machine_config(env.primary_machine_name, provider, env.boxes, nil, false)
config = loaded[:config]
errors = loaded[:config_errors] || []
vm = config.vm
pconfig = vm.get_provider_config(provider)

provider_view =
  case provider
  when :virtualbox
    {
      memory: pconfig.memory,
      cpus: pconfig.cpus,
      customizations: pconfig.customizations.map { |event, command| { event: event, command: command.map(&:to_s) } },
    }
  when :libvirt
    {
      memory: pconfig.memory,
      cpus: pconfig.cpus,
      driver: pconfig.driver,
      disks: pconfig.disks.map { |disk| disk.transform_values { |v| v.is_a?(Symbol) ? v.to_s : v } },
    }
  else
    {}
  end

provisioners = vm.provisioners.map do |prov|
  view = { name: prov.name.to_s, type: prov.type.to_s }
  if prov.type.to_s == "ansible_local"
    c = prov.config
    view.merge!(playbook: c.playbook, provisioning_path: c.provisioning_path, install: c.install,
                inventory_path: c.inventory_path, config_file: c.config_file, become: c.become,
                extra_vars: c.extra_vars)
  elsif prov.type.to_s == "shell"
    view[:path] = prov.config.path
  end
  view
end

forwarded = vm.networks.select { |type, _| type == :forwarded_port }.map do |_, opts|
  opts.slice(:id, :guest, :host, :host_ip, :protocol, :auto_correct)
end

# VBoxManage as the data-disk step sees it: showvminfo from a recording, other commands recorded.
class RecordedVBoxManage
  attr_reader :commands

  def initialize(showvminfo)
    @showvminfo = showvminfo
    @commands = []
  end

  def execute_command(command)
    return @showvminfo if command.first == "showvminfo"

    @commands << command.map(&:to_s)
    ""
  end
end

data_disk_view = nil
if showvminfo
  boot = VagrantPlugins::ProviderVirtualBox::Action.action_boot
  hook = Vagrant::Action::Hook.new
  Vagrant.plugin("2").manager.action_hooks(:machine_action_up).each { |h| h.call(hook) }
  hook.apply(boot, no_prepend_or_append: true)
  stack = boot.stack.map(&:middleware)
  step = boot.stack.find { |item| item.middleware == Telemetry::DataDisk::Attach }
  driver = RecordedVBoxManage.new(File.read(showvminfo))
  if step
    machine = Struct.new(:id, :provider).new("5b0e3b8e-vm-id", Struct.new(:driver).new(driver))
    step.middleware.new(->(_env) {}, {}, *step.arguments.parameters)
        .call(machine: machine, ui: Vagrant::UI::Silent.new)
  end
  data_disk_view = {
    hooked: !step.nil?,
    runs_right_before_boot: stack.index(step&.middleware) == stack.index(VagrantPlugins::ProviderVirtualBox::Action::Boot) - 1,
    runs_after_pre_boot_customizations: stack.index(step&.middleware).to_i > stack.index(VagrantPlugins::ProviderVirtualBox::Action::Customize).to_i,
    commands: driver.commands,
  }
end

puts JSON.pretty_generate(
  data_disk: data_disk_view,
  box: vm.box,
  box_version: vm.box_version,
  hostname: vm.hostname,
  provider: provider_view,
  forwarded_ports: forwarded,
  provisioners: provisioners,
  synced_folders: vm.synced_folders.transform_values { |o| o.slice(:hostpath, :guestpath, :type, :disabled) },
  triggers: { before: config.trigger.before_triggers.map { |t| [t.name, t.command.to_s] },
              after: config.trigger.after_triggers.map { |t| [t.name, t.command.to_s] }, },
  config_errors: errors.map(&:to_s),
)
