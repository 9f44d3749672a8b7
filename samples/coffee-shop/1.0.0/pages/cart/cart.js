const app = getApp();

Page({
  data: { items: [], total: '0.00' },
  onShow() {
    my.getStorage({
      key: 'cart',
      success: ({ data }) => {
        const items = data || [];
        const total = items.reduce((sum, item) => sum + Number(item.price), 0);
        this.setData({ items, total: total.toFixed(2) });
      },
    });
  },
  pay() {
    my.request({
      url: `${app.globalData.apiBase}/orders`,
      method: 'POST',
      data: { items: this.data.items.map((item) => item.id) },
      success: ({ data }) => {
        my.tradePay({
          tradeNO: data.tradeNo,
          success: () => {
            my.setStorage({ key: 'cart', data: [] });
            my.showToast({ content: 'Enjoy your coffee!' });
          },
        });
      },
    });
  },
});
