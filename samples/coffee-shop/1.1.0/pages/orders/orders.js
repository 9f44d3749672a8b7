const app = getApp();

Page({
  data: { orders: [], shop: null },
  onLoad() {
    my.request({
      url: `${app.globalData.apiBase}/orders`,
      success: ({ data }) => this.setData({ orders: data.orders }),
    });
    my.getLocation({
      success: ({ latitude, longitude }) => {
        my.request({
          url: `${app.globalData.apiBase}/shops/nearest`,
          data: { latitude, longitude },
          success: ({ data }) => this.setData({ shop: data }),
        });
      },
    });
  },
  scanTable() {
    my.scan({
      scanType: ['qrCode'],
      success: ({ code }) => my.showToast({ content: `Table ${code}` }),
    });
  },
  copyNumber(event) {
    my.setClipboard({ text: String(event.target.dataset.number) });
    my.showToast({ content: 'Order number copied' });
  },
});
