# Attaches the Kafka data disk to a VirtualBox VM whatever storage controllers its box brought.
#
# Boxes differ: older chef/bento builds have a "SATA Controller" (IntelAhci), current ones a
# "VirtIO Controller" (VirtioSCSI) and an IDE one, and nothing in a box's name says which. So the
# controllers are read from the imported VM (`VBoxManage showvminfo --machinereadable`) just
# before it boots, and the disk goes on a free port of the VM's AHCI controller, or on an AHCI
# controller of its own when the box has none. AHCI because it is the one VirtualBox lets us give
# the disk a serial number (the `SerialNumber` extradata of its port), so the guest finds the
# disk as /dev/disk/by-id/ata-VBOX_HARDDISK_<serial> whichever port or controller it landed on.
#
# `plan` is pure (the recorded showvminfo output of a box in, VBoxManage commands out) so the
# tests can check it against SATA and VirtIO boxes on a host without VirtualBox; `Attach` is the
# Vagrant middleware that runs it between the import and the boot.
module Telemetry
  module DataDisk
    # The serial both providers give the disk; the guest looks it up by this name.
    SERIAL = "kafka-data".freeze
    GUEST_DEVICE = {
      virtualbox: "/dev/disk/by-id/ata-VBOX_HARDDISK_#{SERIAL}",
      libvirt: "/dev/disk/by-id/virtio-#{SERIAL}",
    }.freeze
    # The controller added when the box has no AHCI one.
    OWN_CONTROLLER = "Kafka Data".freeze

    Controller = Struct.new(:name, :type, :instance, :port_count, :max_ports, :attached, keyword_init: true) do
      def ahci?
        type == "IntelAhci"
      end

      def free_port
        (0...max_ports).find { |port| !attached.key?(port) }
      end
    end

    Plan = Struct.new(:controller, :port, :commands, keyword_init: true)

    # The storage controllers of `showvminfo --machinereadable` output, with what each port holds.
    def self.controllers(showvminfo)
      values = showvminfo.each_line.filter_map do |line|
        m = line.chomp.match(/\A"?(.+?)"?="?(.*?)"?\z/)
        m && [m[1], m[2]]
      end.to_h
      values.keys.filter_map { |k| k[/\Astoragecontrollername(\d+)\z/, 1] }.map do |index|
        name = values.fetch("storagecontrollername#{index}")
        attached = {}
        values.each do |key, medium|
          port = key[/\A#{Regexp.escape(name)}-(\d+)-\d+\z/, 1]
          attached[Integer(port, 10)] = medium if port && medium != "none"
        end
        Controller.new(
          name: name,
          type: values.fetch("storagecontrollertype#{index}"),
          instance: Integer(values.fetch("storagecontrollerinstance#{index}"), 10),
          port_count: Integer(values.fetch("storagecontrollerportcount#{index}"), 10),
          max_ports: Integer(values.fetch("storagecontrollermaxportcount#{index}"), 10),
          attached: attached,
        )
      end
    end

    # Where the disk goes and the VBoxManage commands (the VM's id as :id) that put it there.
    # No commands when the disk is already attached: a VM that was halted keeps its disks.
    def self.plan(showvminfo, medium)
      all = controllers(showvminfo)
      all.each do |ctl|
        port = ctl.attached.key(medium)
        return Plan.new(controller: ctl.name, port: port, commands: []) if port
      end

      ctl = all.find { |c| c.ahci? && c.free_port }
      commands = []
      if ctl.nil?
        raise "the VM already has an AHCI controller with no free port" if all.any?(&:ahci?)

        ctl = Controller.new(name: OWN_CONTROLLER, type: "IntelAhci", instance: 0, port_count: 1,
                             max_ports: 30, attached: {})
        commands << ["storagectl", :id, "--name", ctl.name, "--add", "sata", "--controller", "IntelAhci",
                     "--portcount", "1", "--bootable", "off"]
      end
      port = ctl.free_port
      commands << ["storagectl", :id, "--name", ctl.name, "--portcount", (port + 1).to_s] if port >= ctl.port_count
      commands << ["setextradata", :id, "VBoxInternal/Devices/ahci/#{ctl.instance}/Config/Port#{port}/SerialNumber",
                   SERIAL]
      commands << ["storageattach", :id, "--storagectl", ctl.name, "--port", port.to_s, "--device", "0",
                   "--type", "hdd", "--medium", medium]
      Plan.new(controller: ctl.name, port: port, commands: commands)
    end

    # Vagrant middleware: runs the plan against the imported, powered-off VM.
    class Attach
      def initialize(app, _env, medium)
        @app = app
        @medium = medium
      end

      def call(env)
        machine = env[:machine]
        driver = machine.provider.driver
        info = driver.execute_command(["showvminfo", machine.id, "--machinereadable"])
        plan = DataDisk.plan(info, @medium)
        env[:ui].info("Kafka data disk: #{plan.controller}, port #{plan.port}")
        plan.commands.each do |command|
          driver.execute_command(command.map { |arg| arg == :id ? machine.id : arg })
        end
        @app.call(env)
      end
    end

    # Hooks Attach in right before VirtualBox boots the VM: after the import (`vagrant up`) and on
    # every later start, once the pre-boot customizations (which create the disk) have run.
    def self.register(medium)
      return if @registered

      @registered = true
      Class.new(Vagrant.plugin("2")) do
        name "telemetry kafka data disk"
        action_hook(:telemetry_kafka_data_disk) do |hook|
          hook.before(VagrantPlugins::ProviderVirtualBox::Action::Boot, Attach, medium)
        end
      end
    end
  end
end
