Vagrant.configure("2") do |config|
  config.vm.base_mac = "@@MAC0@@"
end
