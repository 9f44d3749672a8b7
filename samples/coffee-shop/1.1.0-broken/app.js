App({
  globalData: {
    apiBase: 'https://api.coffee-shop.example.com',
    cart: [],
  },
  onLaunch() {
    my.getSystemInfo({
      success: (info) => {
        this.globalData.platform = info.platform;
      },
    });
  },
});
