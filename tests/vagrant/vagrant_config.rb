# Prints, as JSON, the configuration Vagrant itself builds from a project's Vagrantfile for one
# provider, with that provider's overrides applied: what `vagrant up --provider=PROVIDER` would use.
# Runs on a host without that provider (no VirtualBox here), since nothing is booted.
#
#   ruby vagrant_config.rb PROJECT_DIR PROVIDER
require "json"
require "vagrant"
begin
  require "vagrant-libvirt"
rescue LoadError
  nil # Only the libvirt provider's settings need it.
end

project_dir, provider = ARGV.fetch(0), ARGV.fetch(1).to_sym
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

puts JSON.pretty_generate(
  box: vm.box,
  hostname: vm.hostname,
  provider: provider_view,
  forwarded_ports: forwarded,
  provisioners: provisioners,
  synced_folders: vm.synced_folders.transform_values { |o| o.slice(:hostpath, :guestpath, :type, :disabled) },
  triggers: { before: config.trigger.before_triggers.map { |t| [t.name, t.command.to_s] },
              after: config.trigger.after_triggers.map { |t| [t.name, t.command.to_s] }, },
  config_errors: errors.map(&:to_s),
)
